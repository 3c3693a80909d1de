-- product_performance: what each product sold per sale date, and its revenue rank within its category that day.
-- Grain: one row per (sale_date, product_id, currency). A run rebuilds only the dates it processed.
WITH daily AS (
    SELECT
        s.event_date AS sale_date,
        s.product_id AS product_id,
        s.currency AS currency,
        COALESCE(MAX(s.product_name), 'unknown') AS product_name,
        COALESCE(MAX(s.category), 'unknown') AS category,
        COUNT(*) AS transactions,
        COUNT(DISTINCT s.customer_id) AS customers,
        SUM(s.quantity) AS units,
        SUM(s.revenue) AS revenue
    FROM {{ database }}.sales AS s
    WHERE s.event_date IN ({{ dates }})
    GROUP BY s.event_date, s.product_id, s.currency
)
SELECT
    d.product_id AS product_id,
    d.product_name AS product_name,
    d.category AS category,
    d.currency AS currency,
    CAST(d.transactions AS bigint) AS transactions,
    CAST(d.customers AS bigint) AS customers,
    CAST(d.units AS bigint) AS units,
    CAST(d.revenue AS decimal(18, 2)) AS revenue,
    CAST(d.revenue / d.units AS decimal(18, 2)) AS average_unit_price,
    CAST(RANK() OVER (PARTITION BY d.sale_date, d.category, d.currency ORDER BY d.revenue DESC) AS bigint)
        AS revenue_rank_in_category,
    d.sale_date AS sale_date
FROM daily AS d
