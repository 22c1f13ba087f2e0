-- Page views per minute per page, from the clickstream `events` topic.
-- Runs unchanged on Apache Flink (with a Kafka `events` table) and on Fluvial:
--   fluvial stream run pipelines/page_views_per_minute.sql --until-idle

SET 'execution.checkpointing.interval' = '10 s';

CREATE TABLE events (
  event_id STRING,
  event_type STRING,
  event_time TIMESTAMP_LTZ(3),
  anonymous_id STRING,
  user_id STRING,
  page ROW<url STRING, referrer STRING, title STRING>,
  WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events'
);

CREATE TABLE page_views_per_minute (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  url STRING,
  views BIGINT,
  visitors BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = 'data/out/page_views_per_minute',
  'format' = 'parquet'
);

CREATE TEMPORARY VIEW page_views AS
SELECT page.url AS url, anonymous_id, event_time
FROM events
WHERE event_type = 'page_view';

INSERT INTO page_views_per_minute
SELECT window_start, window_end, url, COUNT(*) AS views, COUNT(DISTINCT anonymous_id) AS visitors
FROM TABLE(TUMBLE(TABLE page_views, DESCRIPTOR(event_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, url;
