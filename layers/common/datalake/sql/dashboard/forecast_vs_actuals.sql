-- name: Forecast against actuals
-- description: Daily revenue per region, actual and forecast (with its prediction interval).
SELECT
    d.sale_date AS day,
    d.region AS region,
    'actual' AS series,
    CAST(SUM(d.revenue) AS double) AS revenue,
    CAST(NULL AS double) AS revenue_lower,
    CAST(NULL AS double) AS revenue_upper
FROM {{ database }}.daily_sales_by_region AS d
GROUP BY d.sale_date, d.region
UNION ALL
SELECT
    f.forecast_date AS day,
    f.region AS region,
    'forecast' AS series,
    f.yhat AS revenue,
    f.yhat_lower AS revenue_lower,
    f.yhat_upper AS revenue_upper
FROM {{ database }}.sales_forecast AS f
