-- clickstream_hourly: the published table. Its partitions point at the run folder that last rebuilt each date.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.clickstream_hourly (
    event_hour timestamp COMMENT 'the hour (UTC) the events happened in',
    event_type string COMMENT 'page_view, product_view, add_to_cart, remove_from_cart, checkout, search',
    events bigint COMMENT 'events of the type in the hour',
    users bigint COMMENT 'distinct identified visitors (customer_id)',
    sessions bigint COMMENT 'distinct sessions, anonymous ones included'
)
PARTITIONED BY (event_date date)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
