/*---
materialized: table
description: >-
  Identity stitching: each device (anonymous_id) that signed in, the user it belongs to
  (the first user_id seen on it) and when it was first identified. Sessions and orders
  of the device, before and after sign-in, are attributed to that user.
owner: analytics
tags: [clickstream]
columns:
  anonymous_id: {description: The device's anonymous id.}
  user_id: {description: The user the device signed in as., tags: [pii]}
  identified_at: {description: The device's first event that carried the user_id.}
---*/
SELECT
    anonymous_id,
    arg_min(user_id, event_time) AS user_id,
    min(event_time) AS identified_at
FROM refined.events
WHERE NOT is_bot AND anonymous_id IS NOT NULL AND user_id IS NOT NULL
GROUP BY anonymous_id
