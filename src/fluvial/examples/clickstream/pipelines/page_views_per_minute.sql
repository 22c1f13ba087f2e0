-- Page views per minute per page, from the clickstream `events` topic, upserted into the
-- operational store: the live dashboard's top pages and the speed layer of the Lambda
-- metric `page_views_per_minute` (metrics.toml; its batch layer is
-- models/curated/page_views_per_minute.sql). Page views that arrive after the watermark
-- passed their minute go to the `page_views_late` topic, which `fluvial reconcile` reads.
-- Flink SQL; on Apache Flink, read `events` from Kafka and write an upsert sink instead.
--   fluvial stream run pipelines/page_views_per_minute.sql --until-idle

SET 'execution.checkpointing.interval' = '10 s';

CREATE TABLE events (
  event_id STRING,
  event_type STRING,
  -- event time: the collector's skew-corrected time (device clock offset removed),
  -- not the device's own event_time, which can be hours off; the batch layer uses the same
  derived_time TIMESTAMP_LTZ(3),
  anonymous_id STRING,
  user_id STRING,
  page ROW<url STRING, referrer STRING, title STRING>,
  WATERMARK FOR derived_time AS derived_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events',
  'fluvial.late-events.topic' = 'page_views_late'
);

CREATE TABLE page_views_per_minute (
  window_start TIMESTAMP(3),
  url STRING,
  views BIGINT,
  visitors BIGINT,
  PRIMARY KEY (window_start, url) NOT ENFORCED
) WITH (
  'connector' = 'store',
  'table' = 'page_views_per_minute'
);

CREATE TEMPORARY VIEW page_views AS
SELECT page.url AS url, anonymous_id, derived_time
FROM events
WHERE event_type = 'page_view';

INSERT INTO page_views_per_minute
SELECT window_start, url, COUNT(*) AS views, COUNT(DISTINCT anonymous_id) AS visitors
FROM TABLE(TUMBLE(TABLE page_views, DESCRIPTOR(derived_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, url;
