-- <dataset>_history: every version of each key and the span it was current in (SCD type 2), for point-in-time
-- enrichment. A version is valid from its version field until the next version's; the first version also covers
-- everything before it (valid_from is null), so a record older than its reference's first version still finds it.
-- valid_to is null for the current version. Rendered for every dataset that keeps its versions (ADR 0007).
SELECT
    {{ columns }},
    CASE WHEN v.version_number = 1 THEN NULL ELSE v.{{ version }} END AS valid_from,
    v.next_version AS valid_to
FROM (
    SELECT
        {{ inner_columns }},
        ROW_NUMBER() OVER (PARTITION BY {{ key }} ORDER BY s.{{ version }}) AS version_number,
        LEAD(s.{{ version }}) OVER (PARTITION BY {{ key }} ORDER BY s.{{ version }}) AS next_version
    FROM {{ database }}.{{ source }} AS s
) AS v
