ALTER TABLE {{ database }}.{{ table }} SET LOCATION '{{ location }}'
