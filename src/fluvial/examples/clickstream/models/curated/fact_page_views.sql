/*---
materialized: table
partition_by: day(viewed_at)
description: One row per page view of a human visitor, with its session, user version, page and campaign.
owner: analytics
tags: [clickstream]
columns:
  seconds_on_page: {description: Until the session's next page view (null for the exit page).}
---*/
WITH views AS (
    SELECT
        e.event_id AS page_view_id,
        e.event_time AS viewed_at,
        s.session_id,
        s.user_key,
        s.channel,
        s.utm_source,
        s.utm_medium,
        s.utm_campaign,
        e.page_path,
        e.page_type,
        e.device_class,
        e.browser,
        e.os,
        row_number() OVER (PARTITION BY s.session_id ORDER BY e.event_time, e.event_id)
            AS view_number,
        lead(e.event_time) OVER (PARTITION BY s.session_id ORDER BY e.event_time, e.event_id)
            AS next_view_at
    FROM refined.events AS e
    JOIN refined.sessions AS s
        ON s.visitor_id = e.visitor_id AND e.event_time BETWEEN s.started_at AND s.ended_at
    WHERE e.event_type = 'page_view' AND NOT e.is_bot
)
SELECT
    v.page_view_id,
    v.viewed_at,
    CAST(strftime(v.viewed_at AT TIME ZONE 'UTC', '%Y%m%d') AS INTEGER) AS date_key,
    v.session_id,
    v.user_key,
    u.user_sk,
    pg.page_key,
    v.page_path,
    v.page_type,
    c.campaign_key,
    v.channel,
    v.device_class,
    v.browser,
    v.os,
    v.view_number,
    v.view_number = 1 AS is_entry,
    v.next_view_at IS NULL AS is_exit,
    date_diff('millisecond', v.viewed_at, v.next_view_at) / 1000.0 AS seconds_on_page
FROM views AS v
JOIN curated.dim_pages AS pg ON pg.page_path = v.page_path
LEFT JOIN curated.dim_campaigns AS c
    ON c.utm_source IS NOT DISTINCT FROM v.utm_source
    AND c.utm_medium IS NOT DISTINCT FROM v.utm_medium
    AND c.utm_campaign IS NOT DISTINCT FROM v.utm_campaign
LEFT JOIN curated.dim_users AS u
    ON u.user_key = v.user_key
    AND v.viewed_at >= u.valid_from
    AND v.viewed_at < coalesce(u.valid_to, 'infinity'::TIMESTAMPTZ)
