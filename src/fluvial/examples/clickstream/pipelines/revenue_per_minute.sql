-- Orders and revenue per minute, from the purchase events' `revenue` property, upserted
-- into the operational store for the live dashboard's revenue chart.
--   fluvial stream run pipelines/revenue_per_minute.sql

CREATE TABLE events (
  event_type STRING,
  -- event time: the collector's skew-corrected time (device clock offset removed),
  -- not the device's own event_time, which can be hours off
  derived_time TIMESTAMP_LTZ(3),
  properties STRING,
  WATERMARK FOR derived_time AS derived_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events'
);

CREATE TABLE revenue_per_minute (
  window_start TIMESTAMP(3),
  orders BIGINT,
  revenue DOUBLE,
  PRIMARY KEY (window_start) NOT ENFORCED
) WITH (
  'connector' = 'store',
  'table' = 'revenue_per_minute'
);

CREATE TEMPORARY VIEW purchases AS
SELECT derived_time, JSON_VALUE(properties, '$.revenue' RETURNING DOUBLE) AS revenue
FROM events
WHERE event_type = 'purchase';

INSERT INTO revenue_per_minute
SELECT window_start, COUNT(*) AS orders, SUM(revenue) AS revenue
FROM TABLE(TUMBLE(TABLE purchases, DESCRIPTOR(derived_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;
