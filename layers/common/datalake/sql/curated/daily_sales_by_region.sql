-- daily_sales_by_region: sales per sale date, store region and currency.
-- Grain: one row per (sale_date, region, currency). A run rebuilds only the dates it processed.
SELECT
    s.region AS region,
    s.currency AS currency,
    CAST(COUNT(*) AS bigint) AS transactions,
    CAST(COUNT(DISTINCT s.customer_id) AS bigint) AS customers,
    CAST(SUM(s.quantity) AS bigint) AS units,
    CAST(SUM(s.revenue) AS decimal(18, 2)) AS revenue,
    CAST(SUM(s.revenue) / COUNT(*) AS decimal(18, 2)) AS average_transaction_value,
    s.event_date AS sale_date
FROM {{ database }}.sales AS s
WHERE s.event_date IN ({{ dates }})
GROUP BY s.event_date, s.region, s.currency
