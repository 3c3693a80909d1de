CREATE OR REPLACE VIEW {{ database }}.{{ view }} AS
{{ select }}
