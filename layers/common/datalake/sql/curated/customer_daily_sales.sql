-- customer_daily_sales: what each customer bought per sale date and currency, the input customer_aggregates sums.
-- Grain: one row per (sale_date, customer_id, currency). A run rebuilds only the dates it processed, so a whole
-- rebuild of customer_aggregates reads one small row per customer and day instead of every sale (ADR 0027).
SELECT
    s.customer_id AS customer_id,
    s.currency AS currency,
    CAST(COUNT(*) AS bigint) AS transactions,
    CAST(SUM(s.quantity) AS bigint) AS units,
    CAST(SUM(s.revenue) AS decimal(18, 2)) AS revenue,
    s.event_date AS sale_date
FROM {{ database }}.sales AS s
WHERE s.event_date IN ({{ dates }})
GROUP BY s.event_date, s.customer_id, s.currency
