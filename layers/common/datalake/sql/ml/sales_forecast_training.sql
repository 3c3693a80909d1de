-- sales_forecast training window: daily revenue per region and currency over complete days (the run's day excluded).
SELECT
    d.sale_date AS sale_date,
    d.region AS region,
    d.currency AS currency,
    CAST(SUM(d.revenue) AS double) AS revenue
FROM {{ database }}.daily_sales_by_region AS d
WHERE d.sale_date >= DATE '{{ start }}' AND d.sale_date < DATE '{{ end }}'
GROUP BY d.sale_date, d.region, d.currency
