-- name: Revenue by region
-- description: Daily revenue per store region and currency, complete days only (today, still partial, is left out).
SELECT
    d.sale_date AS sale_date,
    d.region AS region,
    d.currency AS currency,
    CAST(SUM(d.revenue) AS double) AS revenue,
    CAST(SUM(d.transactions) AS bigint) AS transactions
FROM {{ database }}.daily_sales_by_region AS d
WHERE d.sale_date < current_date
GROUP BY d.sale_date, d.region, d.currency
