-- name: Top products, last 7 days
-- description: The 20 products with the most revenue over the latest seven sale dates, with their category rank.
SELECT
    p.product_id,
    MAX(p.product_name) AS product_name,
    MAX(p.category) AS category,
    p.currency,
    SUM(p.units) AS units,
    SUM(p.revenue) AS revenue,
    MIN(p.revenue_rank_in_category) AS best_daily_rank_in_category
FROM product_performance AS p
WHERE p.sale_date > (SELECT MAX(sale_date) FROM product_performance) - INTERVAL '7' DAY
GROUP BY p.product_id, p.currency
ORDER BY revenue DESC
LIMIT 20
