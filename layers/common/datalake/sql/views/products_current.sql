-- products_current: the latest version of each product in the processed zone (latest updated_at, then ingestion).
SELECT
    ranked.product_id AS product_id,
    ranked.name AS name,
    ranked.category AS category,
    ranked.list_price AS list_price,
    ranked.currency AS currency,
    ranked.active AS active,
    ranked.updated_at AS updated_at
FROM (
    SELECT
        p.product_id,
        p.name,
        p.category,
        p.list_price,
        p.currency,
        p.active,
        p.updated_at,
        ROW_NUMBER() OVER (PARTITION BY p.product_id ORDER BY p.updated_at DESC, p._ingested_at DESC) AS version
    FROM {{ database }}.products AS p
) AS ranked
WHERE ranked.version = 1
