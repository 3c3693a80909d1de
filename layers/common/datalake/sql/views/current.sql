-- <dataset>_current: the latest version of each key (the greatest version field, whatever the delivery order).
SELECT
    {{ current_columns }}
FROM {{ database }}.{{ source }}_history AS h
WHERE h.valid_to IS NULL
