-- sales_forecast: the published forecast. Each run's batch transform writes JSON lines to its run folder, then the
-- table is pointed at that folder (the newest model's forecast; earlier runs' folders stay for comparison).
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.sales_forecast (
    forecast_date date COMMENT 'the day forecast',
    region string COMMENT 'store region',
    currency string COMMENT 'ISO 4217 code of the forecast revenue',
    yhat double COMMENT 'forecast revenue of the day',
    yhat_lower double COMMENT 'lower bound of the prediction interval (yhat_lower <= yhat)',
    yhat_upper double COMMENT 'upper bound of the prediction interval (yhat <= yhat_upper)',
    model_version string COMMENT 'the SageMaker training job that produced the model',
    trained_at string COMMENT 'ISO-8601 UTC time the model was trained'
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
STORED AS TEXTFILE
LOCATION '{{ location }}'
TBLPROPERTIES ('classification' = 'json')
