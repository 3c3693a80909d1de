-- customers_history: every version of each customer and the span it was current in (SCD type 2), for
-- point-in-time enrichment. A version is valid from its updated_at until the next version's; the first version
-- also covers everything before it (valid_from is null). valid_to is null for the current version.
SELECT
    v.customer_id AS customer_id,
    v.segment AS segment,
    v.region AS region,
    v.country AS country,
    v.signup_date AS signup_date,
    v.updated_at AS updated_at,
    CASE WHEN v.version_number = 1 THEN NULL ELSE v.updated_at END AS valid_from,
    v.next_updated_at AS valid_to
FROM (
    SELECT
        c.customer_id,
        c.segment,
        c.region,
        c.country,
        c.signup_date,
        c.updated_at,
        ROW_NUMBER() OVER (PARTITION BY c.customer_id ORDER BY c.updated_at) AS version_number,
        LEAD(c.updated_at) OVER (PARTITION BY c.customer_id ORDER BY c.updated_at) AS next_updated_at
    FROM {{ database }}.customers AS c
) AS v
