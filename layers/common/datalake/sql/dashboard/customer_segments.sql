-- name: Customer segments
-- description: Customers, revenue and average transaction value per segment and currency.
SELECT
    COALESCE(c.segment, 'unknown') AS segment,
    c.currency AS currency,
    CAST(COUNT(DISTINCT c.customer_id) AS bigint) AS customers,
    CAST(SUM(c.lifetime_revenue) AS double) AS revenue,
    CAST(SUM(c.lifetime_revenue) / SUM(c.transactions) AS double) AS average_transaction_value
FROM {{ database }}.customer_aggregates AS c
GROUP BY COALESCE(c.segment, 'unknown'), c.currency
