-- name: Clickstream events
-- description: Events and distinct users per hour and event type.
SELECT
    h.event_hour AS event_hour,
    h.event_type AS event_type,
    h.events AS events,
    h.users AS users
FROM {{ database }}.clickstream_hourly AS h
