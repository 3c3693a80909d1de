-- product_performance: the published table. Its partitions point at the run folder that last rebuilt each date.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.product_performance (
    product_id string,
    product_name string COMMENT 'the product version valid at the latest sale of the day (products_history); unknown when the product is not in the reference data',
    category string COMMENT 'point-in-time, as product_name; unknown when the product is not in the reference data',
    currency string COMMENT 'ISO 4217 code; amounts are never summed across currencies',
    transactions bigint COMMENT 'sold lines',
    customers bigint COMMENT 'distinct customers who bought the product',
    units bigint COMMENT 'units sold',
    revenue decimal(18,2) COMMENT 'sum of quantity x unit_price',
    average_unit_price decimal(18,2) COMMENT 'revenue / units',
    revenue_rank_in_category bigint COMMENT '1 = the best-selling product of its category that day (ties share a rank)',
    cost decimal(18,2) COMMENT 'sum of quantity x unit_cost of the product version valid at each sale; null unless every sale has a unit_cost in its currency',
    profit decimal(18,2) COMMENT 'revenue - cost; null when cost is'
)
PARTITIONED BY (sale_date date)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
