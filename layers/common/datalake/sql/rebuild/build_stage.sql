CREATE TABLE {{ database }}.{{ stage }}
WITH (format = 'PARQUET', write_compression = 'SNAPPY', external_location = '{{ location }}')
AS
{{ select }}
