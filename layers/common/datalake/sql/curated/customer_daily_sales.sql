-- customer_daily_sales: what each customer bought per sale date and currency, the input customer_aggregates sums.
-- Grain: one row per (sale_date, customer_id, currency). A run rebuilds only the dates it processed, so a whole
-- rebuild of customer_aggregates reads one small row per customer and day instead of every sale (ADR 0027), and
-- this table reads sales_by_customer_day, the Spark job's exact per-day rollup of the sales at this grain (ADR 0030).
SELECT
    d.customer_id AS customer_id,
    d.currency AS currency,
    CAST(d.transactions AS bigint) AS transactions,
    CAST(d.units AS bigint) AS units,
    CAST(d.revenue AS decimal(18, 2)) AS revenue,
    d.event_date AS sale_date
FROM {{ database }}.sales_by_customer_day AS d
WHERE d.event_date IN ({{ dates }})
