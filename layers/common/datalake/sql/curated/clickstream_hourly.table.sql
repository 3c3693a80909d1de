-- clickstream_hourly: the published table. Each run that processed clickstream points it at the run folder it rebuilt.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.clickstream_hourly (
    event_hour timestamp COMMENT 'the hour (UTC) the events happened in',
    event_type string COMMENT 'page_view, product_view, add_to_cart, remove_from_cart, checkout, search',
    events bigint COMMENT 'events of the type in the hour',
    users bigint COMMENT 'distinct identified visitors (customer_id)',
    sessions bigint COMMENT 'distinct sessions, anonymous ones included',
    event_date date COMMENT 'the UTC date of event_hour'
)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
