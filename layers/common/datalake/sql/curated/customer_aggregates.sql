-- customer_aggregates: each customer's purchasing history, with their current segment and region.
-- Grain: one row per (customer_id, currency). Rebuilt whole by every run that processed sales or customers, from
-- customer_daily_sales (one row per customer, currency and day, rebuilt before it for the dates the run touched).
WITH spend AS (
    SELECT
        d.customer_id AS customer_id,
        d.currency AS currency,
        SUM(d.transactions) AS transactions,
        SUM(d.units) AS units,
        SUM(d.revenue) AS revenue,
        MIN(d.sale_date) AS first_purchase_date,
        MAX(d.sale_date) AS last_purchase_date,
        COUNT(DISTINCT d.sale_date) AS active_days
    FROM {{ database }}.customer_daily_sales AS d
    GROUP BY d.customer_id, d.currency
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
