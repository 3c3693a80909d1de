-- products_current: the latest version of each product (the greatest updated_at, whatever the delivery order).
SELECT
    h.product_id AS product_id,
    h.name AS name,
    h.category AS category,
    h.list_price AS list_price,
    h.currency AS currency,
    h.active AS active,
    h.updated_at AS updated_at
FROM {{ database }}.products_history AS h
WHERE h.valid_to IS NULL
