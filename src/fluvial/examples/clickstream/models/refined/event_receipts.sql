/*---
materialized: table
description: >-
  Every event_id the collector received more than once (a tracker's retries), and when
  its first copy arrived. raw.events is read whole on every run, so refined.events can
  keep the earliest copy even when a retry lands in a later run than its original.
owner: analytics
tags: [clickstream]
columns:
  event_id: {description: The repeated event's id.}
  copies: {description: How many times it was received.}
  first_received_at: {description: When its first copy reached the collector.}
---*/
SELECT
    event_id,
    count(*) AS copies,
    min(received_at) AS first_received_at
FROM raw.events
GROUP BY event_id
HAVING count(*) > 1
