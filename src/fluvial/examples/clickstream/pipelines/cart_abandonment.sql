-- Abandoned carts: an add_to_cart, then no checkout before an event more than 30 minutes later.
--   fluvial stream run pipelines/cart_abandonment.sql --until-idle

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

CREATE TABLE abandoned_carts (
  anonymous_id STRING,
  added_time TIMESTAMP_LTZ(3),
  seen_time TIMESTAMP_LTZ(3),
  events_between BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = 'data/out/abandoned_carts',
  'format' = 'json'
);

INSERT INTO abandoned_carts
SELECT anonymous_id, added_time, seen_time, events_between
FROM events
  MATCH_RECOGNIZE (
    PARTITION BY anonymous_id
    ORDER BY derived_time
    MEASURES
      A.derived_time AS added_time,
      L.derived_time AS seen_time,
      COUNT(N.derived_time) AS events_between
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A N*? L)
    DEFINE
      A AS A.event_type = 'add_to_cart',
      N AS N.event_type <> 'checkout',
      L AS L.event_type <> 'checkout' AND L.derived_time > A.derived_time + INTERVAL '30' MINUTE
  ) AS T;
