/*---
materialized: table
description: Marketing campaigns (UTM source, medium and name) that brought sessions.
owner: marketing
tags: [clickstream]
columns:
  campaign_key: {description: "md5 of source|medium|campaign."}
---*/
SELECT
    md5(concat_ws('|', utm_source, utm_medium, utm_campaign)) AS campaign_key,
    utm_source,
    utm_medium,
    utm_campaign,
    arg_max(channel, started_at) AS channel,
    min(started_at) AS first_session_at,
    max(started_at) AS last_session_at,
    count(*) AS sessions
FROM refined.sessions
WHERE utm_campaign IS NOT NULL OR utm_source IS NOT NULL
GROUP BY utm_source, utm_medium, utm_campaign
