-- daily_sales_by_region: the published table. Its partitions point at the run folder that last rebuilt each date.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.daily_sales_by_region (
    region string COMMENT 'store region of the sale',
    currency string COMMENT 'ISO 4217 code; amounts are never summed across currencies',
    transactions bigint COMMENT 'sold lines (one per transaction_id)',
    customers bigint COMMENT 'distinct customers who bought',
    units bigint COMMENT 'units sold',
    revenue decimal(18,2) COMMENT 'sum of quantity x unit_price',
    average_transaction_value decimal(18,2) COMMENT 'revenue / transactions'
)
PARTITIONED BY (sale_date date)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
