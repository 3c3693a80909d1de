-- products_history: every version of each product and the span it was current in (SCD type 2), for
-- point-in-time enrichment. A version is valid from its updated_at until the next version's; the first version
-- also covers everything before it (valid_from is null), so a sale older than the product's first version still
-- finds the product. valid_to is null for the current version.
SELECT
    v.product_id AS product_id,
    v.name AS name,
    v.category AS category,
    v.list_price AS list_price,
    v.currency AS currency,
    v.active AS active,
    v.updated_at AS updated_at,
    CASE WHEN v.version_number = 1 THEN NULL ELSE v.updated_at END AS valid_from,
    v.next_updated_at AS valid_to
FROM (
    SELECT
        p.product_id,
        p.name,
        p.category,
        p.list_price,
        p.currency,
        p.active,
        p.updated_at,
        ROW_NUMBER() OVER (PARTITION BY p.product_id ORDER BY p.updated_at) AS version_number,
        LEAD(p.updated_at) OVER (PARTITION BY p.product_id ORDER BY p.updated_at) AS next_updated_at
    FROM {{ database }}.products AS p
) AS v
