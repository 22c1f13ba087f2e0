-- Active users over the last 5 minutes, updated every minute (a hopping window),
-- written back to the log as the `active_users` topic.
--   fluvial stream run pipelines/active_users_hop.sql

CREATE TABLE events (
  event_type STRING,
  event_time TIMESTAMP_LTZ(3),
  anonymous_id STRING,
  user_id STRING,
  WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events'
);

CREATE TABLE active_users (
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
INSERT INTO active_users
SELECT
  window_start,
  window_end,
  COUNT(DISTINCT COALESCE(user_id, anonymous_id)) AS active_users,
  COUNT(DISTINCT user_id) AS signed_in,
  COUNT(*) AS events
FROM TABLE(HOP(TABLE events, DESCRIPTOR(event_time), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end;
