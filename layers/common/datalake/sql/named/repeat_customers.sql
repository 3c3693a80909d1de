-- name: Repeat customers
-- description: How many customers bought on one, two to three, or more than three distinct days.
SELECT
    CASE
        WHEN c.active_days = 1 THEN '1 day'
        WHEN c.active_days <= 3 THEN '2-3 days'
        ELSE '4+ days'
    END AS purchase_days,
    COUNT(*) AS customers,
    SUM(c.lifetime_revenue) AS revenue
FROM customer_aggregates AS c
GROUP BY 1
ORDER BY 1
