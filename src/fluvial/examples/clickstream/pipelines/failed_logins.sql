-- Possible credential stuffing: three failed logins in a row, then a success, within 10 minutes.
--   fluvial stream run pipelines/failed_logins.sql --until-idle

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

CREATE TABLE suspicious_logins (
  anonymous_id STRING,
  first_failure TIMESTAMP_LTZ(3),
  success_time TIMESTAMP_LTZ(3),
  failures BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = 'data/out/suspicious_logins',
  'format' = 'json'
);

INSERT INTO suspicious_logins
SELECT anonymous_id, first_failure, success_time, failures
FROM events
  MATCH_RECOGNIZE (
    PARTITION BY anonymous_id
    ORDER BY derived_time
    MEASURES
      FIRST(F.derived_time) AS first_failure,
      S.derived_time AS success_time,
      COUNT(F.derived_time) AS failures
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (F{3} S) WITHIN INTERVAL '10' MINUTE
    DEFINE
      F AS F.event_type = 'login_failed',
      S AS S.event_type = 'login_success'
  ) AS T;
