-- Browsing sessions per anonymous visitor: a session ends after 30 minutes of inactivity.
--   fluvial stream run pipelines/sessions.sql --until-idle

CREATE TABLE events (
  event_type STRING,
  -- event time: the collector's skew-corrected time (device clock offset removed),
  -- not the device's own event_time, which can be hours off
  derived_time TIMESTAMP_LTZ(3),
  anonymous_id STRING,
  WATERMARK FOR derived_time AS derived_time - INTERVAL '10' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events'
);

CREATE TABLE sessions (
  anonymous_id STRING,
  session_start TIMESTAMP(3),
  session_end TIMESTAMP(3),
  events BIGINT,
  page_views BIGINT,
  purchases BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = 'data/out/sessions',
  'format' = 'json'
);

INSERT INTO sessions
SELECT
  anonymous_id,
  window_start,
  window_end,
  COUNT(*),
  COUNT(*) FILTER (WHERE event_type = 'page_view'),
  COUNT(*) FILTER (WHERE event_type = 'purchase')
FROM TABLE(SESSION(TABLE events PARTITION BY anonymous_id, DESCRIPTOR(derived_time), INTERVAL '30' MINUTE))
GROUP BY window_start, window_end, anonymous_id;
