-- clickstream_hourly: events and distinct users per hour (UTC) and event type.
-- Grain: one row per (event_hour, event_type). A run rebuilds only the dates of the clickstream it processed.
-- users counts identified visitors (customer_id); sessions counts every visit, anonymous ones included.
SELECT
    date_trunc('hour', c.event_time) AS event_hour,
    c.event_type AS event_type,
    CAST(COUNT(*) AS bigint) AS events,
    CAST(COUNT(DISTINCT c.customer_id) AS bigint) AS users,
    CAST(COUNT(DISTINCT c.session_id) AS bigint) AS sessions,
    c.event_date AS event_date
FROM {{ database }}.clickstream AS c
WHERE c.event_date IN ({{ dates }})
GROUP BY date_trunc('hour', c.event_time), c.event_type, c.event_date
