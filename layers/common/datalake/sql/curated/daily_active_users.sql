-- daily_active_users: the clickstream's daily active users and sessions.
-- Grain: one row per activity_date (UTC). A run rebuilds only the dates of the clickstream it processed.
SELECT
    CAST(COUNT(DISTINCT c.customer_id) AS bigint) AS active_users,
    CAST(COUNT(DISTINCT c.session_id) AS bigint) AS sessions,
    CAST(COUNT(*) AS bigint) AS events,
    CAST(COUNT_IF(c.event_type = 'checkout') AS bigint) AS checkouts,
    c.event_date AS activity_date
FROM {{ database }}.clickstream AS c
WHERE c.event_date IN ({{ dates }})
GROUP BY c.event_date
