/*---
materialized: table
description: The shop's pages (by path, without the query string) that received page views.
owner: analytics
tags: [clickstream]
columns:
  page_key: {description: md5 of the path.}
---*/
SELECT
    md5(page_path) AS page_key,
    page_path,
    arg_max(page_type, event_time) AS page_type,
    arg_max(page_title, event_time) AS title,
    arg_max(json_extract_string(properties, '$.category'), event_time) AS category,
    arg_max(json_extract_string(properties, '$.product_id'), event_time) AS product_id,
    min(event_time) AS first_viewed_at,
    max(event_time) AS last_viewed_at
FROM refined.events
WHERE event_type = 'page_view' AND NOT is_bot
GROUP BY page_path
