-- name: Top products
-- description: The ten products with the most revenue.
SELECT
    p.product_name AS product_name,
    p.category AS category,
    CAST(SUM(p.revenue) AS double) AS revenue,
    CAST(SUM(p.units) AS bigint) AS units
FROM {{ database }}.product_performance AS p
GROUP BY p.product_name, p.category
ORDER BY revenue DESC
LIMIT 10
