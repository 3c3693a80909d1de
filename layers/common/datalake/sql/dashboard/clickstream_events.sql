-- name: Clickstream events
-- description: Events per day and event type (the hourly table summed by its date), complete days only.
SELECT
    h.event_date AS event_date,
    h.event_type AS event_type,
    CAST(SUM(h.events) AS bigint) AS events
FROM {{ database }}.clickstream_hourly AS h
WHERE h.event_date < current_date
GROUP BY h.event_date, h.event_type
