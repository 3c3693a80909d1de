-- daily_active_users: the published table. Each run that processed clickstream points it at the run folder it rebuilt.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.daily_active_users (
    activity_date date COMMENT 'UTC date',
    active_users bigint COMMENT 'distinct identified visitors (customer_id) with an event that day',
    sessions bigint COMMENT 'distinct sessions with an event that day, anonymous ones included',
    events bigint COMMENT 'clickstream events that day',
    checkouts bigint COMMENT 'checkout events that day'
)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
