-- name: Forecast against actuals
-- description: Daily revenue per region and currency, actual (complete days only) and forecast (with its prediction interval).
SELECT
    d.sale_date AS day,
    d.region AS region,
    d.currency AS currency,
    'actual' AS series,
    CAST(SUM(d.revenue) AS double) AS revenue,
    CAST(NULL AS double) AS revenue_lower,
    CAST(NULL AS double) AS revenue_upper
FROM {{ database }}.daily_sales_by_region AS d
WHERE d.sale_date < current_date
GROUP BY d.sale_date, d.region, d.currency
UNION ALL
SELECT
    f.forecast_date AS day,
    f.region AS region,
    f.currency AS currency,
    'forecast' AS series,
    f.yhat AS revenue,
    f.yhat_lower AS revenue_lower,
    f.yhat_upper AS revenue_upper
FROM {{ database }}.sales_forecast AS f
