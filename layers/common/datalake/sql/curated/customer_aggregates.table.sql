-- customer_aggregates: the published table. Each run points it at the run folder it rebuilt.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.customer_aggregates (
    customer_id string,
    segment string COMMENT 'from customers_current; null when the customer is not in the reference data',
    region string COMMENT 'region of the customer (customers_current)',
    country string,
    currency string COMMENT 'ISO 4217 code; one row per customer and currency they paid in',
    transactions bigint COMMENT 'sold lines over the whole history',
    units bigint,
    lifetime_revenue decimal(18,2),
    average_transaction_value decimal(18,2) COMMENT 'lifetime_revenue / transactions',
    first_purchase_date date,
    last_purchase_date date,
    active_days bigint COMMENT 'distinct dates with a purchase'
)
STORED AS PARQUET
LOCATION '{{ location }}'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY', 'classification' = 'parquet')
