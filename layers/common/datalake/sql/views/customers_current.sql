-- customers_current: the latest version of each customer (the greatest updated_at, whatever the delivery order).
SELECT
    h.customer_id AS customer_id,
    h.segment AS segment,
    h.region AS region,
    h.country AS country,
    h.signup_date AS signup_date,
    h.updated_at AS updated_at
FROM {{ database }}.customers_history AS h
WHERE h.valid_to IS NULL
