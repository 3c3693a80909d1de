-- customer_aggregates: each customer's purchasing history, with their current segment and region.
-- Grain: one row per (customer_id, currency). Rebuilt whole by every run that processed sales or customers.
WITH spend AS (
    SELECT
        s.customer_id AS customer_id,
        s.currency AS currency,
        COUNT(*) AS transactions,
        SUM(s.quantity) AS units,
        SUM(s.revenue) AS revenue,
        MIN(s.event_date) AS first_purchase_date,
        MAX(s.event_date) AS last_purchase_date,
        COUNT(DISTINCT s.event_date) AS active_days
    FROM {{ database }}.sales AS s
    GROUP BY s.customer_id, s.currency
)
SELECT
    sp.customer_id AS customer_id,
    c.segment AS segment,
    c.region AS region,
    c.country AS country,
    sp.currency AS currency,
    CAST(sp.transactions AS bigint) AS transactions,
    CAST(sp.units AS bigint) AS units,
    CAST(sp.revenue AS decimal(18, 2)) AS lifetime_revenue,
    CAST(sp.revenue / sp.transactions AS decimal(18, 2)) AS average_transaction_value,
    sp.first_purchase_date AS first_purchase_date,
    sp.last_purchase_date AS last_purchase_date,
    CAST(sp.active_days AS bigint) AS active_days
FROM spend AS sp
LEFT JOIN {{ database }}.customers_current AS c ON c.customer_id = sp.customer_id
