-- Active users over the last 5 minutes, updated every minute (a hopping window): upserted
-- into the operational store for the live dashboard's "Active users (5 min)" card, and
-- written back to the log as the `active_users` topic for other consumers.
--   fluvial stream run pipelines/active_users_hop.sql

CREATE TABLE events (
  event_type STRING,
  -- event time: the collector's skew-corrected time (device clock offset removed),
  -- not the device's own event_time, which can be hours off
  derived_time TIMESTAMP_LTZ(3),
  anonymous_id STRING,
  user_id STRING,
  WATERMARK FOR derived_time AS derived_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events'
);

CREATE TABLE active_users (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  active_users BIGINT,
  signed_in BIGINT,
  events BIGINT,
  PRIMARY KEY (window_start, window_end) NOT ENFORCED
) WITH (
  'connector' = 'store',
  'table' = 'active_users'
);

CREATE TABLE active_users_topic (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  active_users BIGINT,
  signed_in BIGINT,
  events BIGINT
) WITH (
  'connector' = 'fluvial',
  'topic' = 'active_users'
);

-- Flink's HOP TVF takes the slide first, then the size
CREATE TEMPORARY VIEW active_per_window AS
SELECT
  window_start,
  window_end,
  COUNT(DISTINCT COALESCE(user_id, anonymous_id)) AS active_users,
  COUNT(DISTINCT user_id) AS signed_in,
  COUNT(*) AS events
FROM TABLE(HOP(TABLE events, DESCRIPTOR(derived_time), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end;

INSERT INTO active_users SELECT * FROM active_per_window;

INSERT INTO active_users_topic SELECT * FROM active_per_window;
