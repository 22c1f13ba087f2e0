-- The shop's funnel per minute: events and distinct visitors at each step (page view,
-- add to cart, checkout, purchase), upserted into the operational store for the live
-- dashboard's funnel.
--   fluvial stream run pipelines/funnel_per_minute.sql

CREATE TABLE events (
  event_type STRING,
  -- event time: the collector's skew-corrected time (device clock offset removed),
  -- not the device's own event_time, which can be hours off
  derived_time TIMESTAMP_LTZ(3),
  anonymous_id STRING,
  WATERMARK FOR derived_time AS derived_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events'
);

CREATE TABLE funnel_per_minute (
  window_start TIMESTAMP(3),
  event_type STRING,
  events BIGINT,
  visitors BIGINT,
  PRIMARY KEY (window_start, event_type) NOT ENFORCED
) WITH (
  'connector' = 'store',
  'table' = 'funnel_per_minute'
);

INSERT INTO funnel_per_minute
SELECT window_start, event_type, COUNT(*) AS events, COUNT(DISTINCT anonymous_id) AS visitors
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(derived_time), INTERVAL '1' MINUTE))
WHERE event_type IN ('page_view', 'add_to_cart', 'checkout', 'purchase')
GROUP BY window_start, window_end, event_type;
