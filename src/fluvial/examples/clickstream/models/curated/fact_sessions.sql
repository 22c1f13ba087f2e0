/*---
materialized: table
partition_by: day(started_at)
description: One row per session, keyed to the date, user (version at the session's start), pages and campaign.
owner: analytics
tags: [clickstream]
---*/
SELECT
    s.session_id,
    d.date_key,
    s.session_date,
    s.user_key,
    u.user_sk,
    s.visitor_id,
    entry.page_key AS entry_page_key,
    exit.page_key AS exit_page_key,
    c.campaign_key,
    s.channel,
    s.device_class,
    s.browser,
    s.os,
    s.started_at,
    s.ended_at,
    s.duration_seconds,
    s.events,
    s.page_views,
    s.product_views,
    s.is_bounce,
    s.added_to_cart,
    s.reached_checkout,
    s.converted,
    s.orders,
    s.revenue
FROM refined.sessions AS s
JOIN curated.dim_date AS d ON d.date = s.session_date
LEFT JOIN curated.dim_pages AS entry ON entry.page_path = s.entry_page
LEFT JOIN curated.dim_pages AS exit ON exit.page_path = s.exit_page
LEFT JOIN curated.dim_campaigns AS c
    ON c.utm_source IS NOT DISTINCT FROM s.utm_source
    AND c.utm_medium IS NOT DISTINCT FROM s.utm_medium
    AND c.utm_campaign IS NOT DISTINCT FROM s.utm_campaign
LEFT JOIN curated.dim_users AS u
    ON u.user_key = s.user_key
    AND s.started_at >= u.valid_from
    AND s.started_at < coalesce(u.valid_to, 'infinity'::TIMESTAMPTZ)
