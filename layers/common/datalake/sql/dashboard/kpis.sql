-- name: Sales KPIs
-- description: Revenue, profit, transactions and average order value per currency over the last seven complete days (today, still partial, is left out), each with its value over the seven days before.
WITH periods AS (
    SELECT
        date_add('day', -13, MAX(d.sale_date)) AS previous_start,
        date_add('day', -6, MAX(d.sale_date)) AS period_start,
        MAX(d.sale_date) AS period_end
    FROM {{ database }}.daily_sales_by_region AS d
    WHERE d.sale_date < current_date
),
sales AS (
    SELECT
        d.currency AS currency,
        SUM(CASE WHEN d.sale_date >= p.period_start THEN d.revenue END) AS revenue,
        SUM(CASE WHEN d.sale_date < p.period_start THEN d.revenue END) AS previous_revenue,
        SUM(CASE WHEN d.sale_date >= p.period_start THEN d.transactions END) AS transactions,
        SUM(CASE WHEN d.sale_date < p.period_start THEN d.transactions END) AS previous_transactions
    FROM {{ database }}.daily_sales_by_region AS d
    CROSS JOIN periods AS p
    WHERE d.sale_date BETWEEN p.previous_start AND p.period_end
    GROUP BY d.currency
),
margins AS (
    SELECT
        x.currency AS currency,
        SUM(CASE WHEN x.sale_date >= p.period_start THEN x.profit END) AS profit,
        SUM(CASE WHEN x.sale_date < p.period_start THEN x.profit END) AS previous_profit,
        SUM(CASE WHEN x.sale_date >= p.period_start AND x.profit IS NOT NULL THEN x.revenue END) AS costed_revenue
    FROM {{ database }}.product_performance AS x
    CROSS JOIN periods AS p
    WHERE x.sale_date BETWEEN p.previous_start AND p.period_end
    GROUP BY x.currency
)
SELECT
    s.currency AS currency,
    p.period_start AS period_start,
    p.period_end AS period_end,
    CAST(s.revenue AS double) AS revenue,
    CAST(s.previous_revenue AS double) AS previous_revenue,
    CAST(m.profit AS double) AS profit,
    CAST(m.previous_profit AS double) AS previous_profit,
    CAST(m.costed_revenue AS double) / CAST(s.revenue AS double) AS profit_coverage,
    CAST(s.transactions AS bigint) AS transactions,
    CAST(s.previous_transactions AS bigint) AS previous_transactions,
    CAST(s.revenue AS double) / CAST(s.transactions AS double) AS average_order_value,
    CAST(s.previous_revenue AS double) / CAST(s.previous_transactions AS double) AS previous_average_order_value
FROM sales AS s
CROSS JOIN periods AS p
LEFT JOIN margins AS m ON m.currency = s.currency
ORDER BY s.revenue DESC
