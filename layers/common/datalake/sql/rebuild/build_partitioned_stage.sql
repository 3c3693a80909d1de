CREATE TABLE {{ database }}.{{ stage }}
WITH (
    format = 'PARQUET',
    write_compression = 'SNAPPY',
    external_location = '{{ location }}',
    partitioned_by = ARRAY['{{ partition_column }}']
)
AS
{{ select }}
