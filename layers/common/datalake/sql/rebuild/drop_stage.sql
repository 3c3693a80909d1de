DROP TABLE IF EXISTS {{ database }}.{{ stage }}
