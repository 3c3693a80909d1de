INSERT INTO {{ database }}.{{ stage }}
{{ select }}
