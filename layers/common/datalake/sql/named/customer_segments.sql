-- name: Customer segments
-- description: Customers, revenue and average lifetime value per customer segment and region.
SELECT
    COALESCE(c.segment, 'unknown') AS segment,
    COALESCE(c.region, 'unknown') AS region,
    c.currency,
    COUNT(*) AS customers,
    SUM(c.lifetime_revenue) AS revenue,
    CAST(AVG(c.lifetime_revenue) AS decimal(18, 2)) AS average_lifetime_revenue,
    CAST(AVG(c.transactions) AS decimal(10, 2)) AS average_transactions
FROM customer_aggregates AS c
GROUP BY 1, 2, 3
ORDER BY revenue DESC
