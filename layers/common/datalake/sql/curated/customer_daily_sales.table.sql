-- customer_daily_sales: the published table. Its partitions point at the run folder that last rebuilt each date.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.customer_daily_sales (
    customer_id string,
    currency string COMMENT 'ISO 4217 code; one row per customer, date and currency they paid in',
    transactions bigint COMMENT 'sold lines that day',
    units bigint COMMENT 'units bought that day',
    revenue decimal(18,2) COMMENT 'sum of quantity x unit_price that day'
)
PARTITIONED BY (sale_date date)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
