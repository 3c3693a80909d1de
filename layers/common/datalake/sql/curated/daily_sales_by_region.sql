-- daily_sales_by_region: sales per sale date, store region and currency.
-- Grain: one row per (sale_date, region, currency). A run rebuilds only the dates it processed.
-- It reads sales_by_region_day, the Spark job's exact per-day rollup of the sales at this grain (ADR 0030): one row
-- per region, currency and day instead of every sale; its distinct customers are counted at this very grain.
SELECT
    r.region AS region,
    r.currency AS currency,
    CAST(r.transactions AS bigint) AS transactions,
    CAST(r.customers AS bigint) AS customers,
    CAST(r.units AS bigint) AS units,
    CAST(r.revenue AS decimal(18, 2)) AS revenue,
    CAST(r.revenue / r.transactions AS decimal(18, 2)) AS average_transaction_value,
    r.event_date AS sale_date
FROM {{ database }}.sales_by_region_day AS r
WHERE r.event_date IN ({{ dates }})
