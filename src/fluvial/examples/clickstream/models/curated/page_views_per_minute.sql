/*---
materialized: table
partition_by: day(window_start)
description: >-
  Page views per minute (UTC) and page: the batch layer of the Lambda metric
  page_views_per_minute (metrics.toml). The same definition as the stream pipeline
  pipelines/page_views_per_minute.sql, recomputed from every raw event, late ones
  included, so the serving view can take closed minutes from here and fluvial reconcile
  can compare both layers. Minutes are of the collector's skew-corrected derived_time,
  as in the pipeline (a device clock hours off would otherwise move its views hours).
owner: analytics
tags: [clickstream, lambda]
columns:
  window_start: {description: The minute's start (UTC).}
  url: {description: The page's URL as the device sent it.}
  views: {description: Page view events logged for the page in that minute.}
  visitors: {description: Distinct devices (anonymous_id) among them.}
---*/
SELECT
    date_trunc('minute', derived_time) AS window_start,
    page.url AS url,
    count(*) AS views,
    count(DISTINCT anonymous_id) AS visitors
FROM raw.events
WHERE event_type = 'page_view'
GROUP BY 1, 2
