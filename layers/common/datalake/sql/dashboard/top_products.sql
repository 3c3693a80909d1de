-- name: Top products
-- description: Per currency, the ten products with the most revenue, with their profit (null unless every sale has a known cost).
WITH totals AS (
    SELECT
        p.product_id AS product_id,
        p.currency AS currency,
        MAX_BY(p.product_name, p.sale_date) AS product_name,
        MAX_BY(p.category, p.sale_date) AS category,
        SUM(p.revenue) AS revenue,
        CASE WHEN COUNT(p.profit) = COUNT(*) THEN SUM(p.profit) END AS profit,
        SUM(p.units) AS units
    FROM {{ database }}.product_performance AS p
    GROUP BY p.product_id, p.currency
),
ranked AS (
    SELECT
        t.product_id AS product_id,
        t.currency AS currency,
        t.product_name AS product_name,
        t.category AS category,
        t.revenue AS revenue,
        t.profit AS profit,
        t.units AS units,
        ROW_NUMBER() OVER (PARTITION BY t.currency ORDER BY t.revenue DESC, t.product_id) AS position
    FROM totals AS t
)
SELECT
    r.product_name AS product_name,
    r.category AS category,
    r.currency AS currency,
    CAST(r.revenue AS double) AS revenue,
    CAST(r.profit AS double) AS profit,
    CAST(r.units AS bigint) AS units
FROM ranked AS r
WHERE r.position <= 10
ORDER BY r.currency, r.revenue DESC
