-- name: Revenue by region and month
-- description: Monthly revenue, transactions and units per store region and currency.
SELECT
    CAST(date_trunc('month', d.sale_date) AS date) AS month,
    d.region,
    d.currency,
    SUM(d.transactions) AS transactions,
    SUM(d.units) AS units,
    SUM(d.revenue) AS revenue
FROM daily_sales_by_region AS d
GROUP BY 1, 2, 3
ORDER BY month, region, currency
