-- daily_active_users: the published table. Its partitions point at the run folder that last rebuilt each date.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.daily_active_users (
    active_users bigint COMMENT 'distinct identified visitors (customer_id) with an event that day',
    sessions bigint COMMENT 'distinct sessions with an event that day, anonymous ones included',
    events bigint COMMENT 'clickstream events that day',
    checkouts bigint COMMENT 'checkout events that day'
)
PARTITIONED BY (activity_date date)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
