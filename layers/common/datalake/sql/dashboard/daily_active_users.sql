-- name: Daily active users
-- description: Per complete day, identified visitors (signed-in customers) and sessions (every visit, anonymous ones included).
SELECT
    a.activity_date AS activity_date,
    a.active_users AS active_users,
    a.sessions AS sessions,
    a.events AS events
FROM {{ database }}.daily_active_users AS a
WHERE a.activity_date < current_date
