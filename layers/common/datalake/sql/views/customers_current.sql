-- customers_current: the latest version of each customer in the processed zone (latest updated_at, then ingestion).
SELECT
    ranked.customer_id AS customer_id,
    ranked.segment AS segment,
    ranked.region AS region,
    ranked.country AS country,
    ranked.signup_date AS signup_date,
    ranked.updated_at AS updated_at
FROM (
    SELECT
        c.customer_id,
        c.segment,
        c.region,
        c.country,
        c.signup_date,
        c.updated_at,
        ROW_NUMBER() OVER (PARTITION BY c.customer_id ORDER BY c.updated_at DESC, c._ingested_at DESC) AS version
    FROM {{ database }}.customers AS c
) AS ranked
WHERE ranked.version = 1
