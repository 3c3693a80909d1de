-- name: Sales KPIs
-- description: Revenue, transactions and average order value over every curated day.
SELECT
    CAST(SUM(d.revenue) AS double) AS revenue,
    CAST(SUM(d.transactions) AS bigint) AS transactions,
    CAST(SUM(d.revenue) / SUM(d.transactions) AS double) AS average_order_value,
    CAST(COUNT(DISTINCT d.region) AS bigint) AS regions
FROM {{ database }}.daily_sales_by_region AS d
