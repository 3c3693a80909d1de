-- name: Daily revenue trend
-- description: Revenue per sale date and currency with its seven-day moving average.
SELECT
    t.sale_date,
    t.currency,
    t.revenue,
    CAST(AVG(t.revenue) OVER (
        PARTITION BY t.currency ORDER BY t.sale_date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW
    ) AS decimal(18, 2)) AS revenue_7_day_average
FROM (
    SELECT d.sale_date, d.currency, SUM(d.revenue) AS revenue
    FROM daily_sales_by_region AS d
    GROUP BY d.sale_date, d.currency
) AS t
ORDER BY t.currency, t.sale_date
