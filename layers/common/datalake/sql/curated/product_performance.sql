-- product_performance: what each product sold per sale date, and its revenue rank within its category that day.
-- Grain: one row per (sale_date, product_id, currency). A run rebuilds the dates it processed and the dates whose
-- sales a product change touches. Name and category are point-in-time: each sale takes the product version valid
-- at its event_time (products_history), and a product's row takes those of its latest sale that day.
-- cost is point-in-time too: each sale costs quantity x the unit_cost of the product version valid at its event_time,
-- when that version has a unit_cost in the sale's currency; a day's cost (and profit = revenue - cost) is null unless
-- every sale of the product that day has one (a partial sum would overstate the profit).
-- Point in time without reading every sale's event time (ADR 0027): on a date no product version begins (steady_dates),
-- the version valid at the start of the day is valid all day, so the day's sales are summed per product first and take
-- that version; on the other dates (versioned_dates) each sale takes the version valid at its event_time.
-- The steady dates read sales_by_product_day, the Spark job's exact per-day rollup of the sales per product and
-- currency (ADR 0030): one row per product and day instead of every sale.
WITH sold AS (
    SELECT
        s.event_date AS sale_date,
        s.event_time AS event_time,
        s.product_id AS product_id,
        s.currency AS currency,
        s.customer_id AS customer_id,
        s.quantity AS quantity,
        s.revenue AS revenue,
        h.name AS product_name,
        h.category AS category,
        CASE WHEN h.currency = s.currency THEN s.quantity * h.unit_cost END AS cost
    FROM {{ database }}.sales AS s
    LEFT JOIN {{ database }}.products_history AS h
        ON h.product_id = s.product_id
        AND (h.valid_from IS NULL OR s.event_time >= h.valid_from)
        AND (h.valid_to IS NULL OR s.event_time < h.valid_to)
    WHERE s.event_date IN ({{ versioned_dates }})
),
versioned AS (
    SELECT
        d.sale_date AS sale_date,
        d.product_id AS product_id,
        d.currency AS currency,
        COALESCE(MAX_BY(d.product_name, d.event_time), 'unknown') AS product_name,
        COALESCE(MAX_BY(d.category, d.event_time), 'unknown') AS category,
        COUNT(*) AS transactions,
        COUNT(DISTINCT d.customer_id) AS customers,
        SUM(d.quantity) AS units,
        SUM(d.revenue) AS revenue,
        CASE WHEN COUNT(d.cost) = COUNT(*) THEN SUM(d.cost) END AS cost
    FROM sold AS d
    GROUP BY d.sale_date, d.product_id, d.currency
),
summed AS (
    SELECT
        p.event_date AS sale_date,
        p.product_id AS product_id,
        p.currency AS currency,
        p.transactions AS transactions,
        p.customers AS customers,
        p.units AS units,
        p.revenue AS revenue
    FROM {{ database }}.sales_by_product_day AS p
    WHERE p.event_date IN ({{ steady_dates }})
),
steady AS (
    SELECT
        m.sale_date AS sale_date,
        m.product_id AS product_id,
        m.currency AS currency,
        COALESCE(h.name, 'unknown') AS product_name,
        COALESCE(h.category, 'unknown') AS category,
        m.transactions AS transactions,
        m.customers AS customers,
        m.units AS units,
        m.revenue AS revenue,
        CASE WHEN h.currency = m.currency THEN m.units * h.unit_cost END AS cost
    FROM summed AS m
    LEFT JOIN {{ database }}.products_history AS h
        ON h.product_id = m.product_id
        AND (h.valid_from IS NULL OR CAST(m.sale_date AS timestamp) >= h.valid_from)
        AND (h.valid_to IS NULL OR CAST(m.sale_date AS timestamp) < h.valid_to)
),
daily AS (
    SELECT * FROM versioned
    UNION ALL
    SELECT * FROM steady
)
SELECT
    d.product_id AS product_id,
    d.product_name AS product_name,
    d.category AS category,
    d.currency AS currency,
    CAST(d.transactions AS bigint) AS transactions,
    CAST(d.customers AS bigint) AS customers,
    CAST(d.units AS bigint) AS units,
    CAST(d.revenue AS decimal(18, 2)) AS revenue,
    CAST(d.revenue / d.units AS decimal(18, 2)) AS average_unit_price,
    CAST(RANK() OVER (PARTITION BY d.sale_date, d.category, d.currency ORDER BY d.revenue DESC) AS bigint)
        AS revenue_rank_in_category,
    CAST(d.cost AS decimal(18, 2)) AS cost,
    CAST(d.revenue - d.cost AS decimal(18, 2)) AS profit,
    d.sale_date AS sale_date
FROM daily AS d
