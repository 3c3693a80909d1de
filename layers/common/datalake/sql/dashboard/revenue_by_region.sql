-- name: Revenue by region
-- description: Daily revenue per store region.
SELECT
    d.sale_date AS sale_date,
    d.region AS region,
    CAST(SUM(d.revenue) AS double) AS revenue,
    CAST(SUM(d.transactions) AS bigint) AS transactions
FROM {{ database }}.daily_sales_by_region AS d
GROUP BY d.sale_date, d.region
