-- name: Daily active users
-- description: Distinct identified visitors and sessions per day.
SELECT
    a.activity_date AS activity_date,
    a.active_users AS active_users,
    a.sessions AS sessions,
    a.events AS events
FROM {{ database }}.daily_active_users AS a
