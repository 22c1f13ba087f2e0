/*---
materialized: table
description: >-
  Visits: a visitor's (device's) events with no pause longer than 30 minutes between
  them, on the skew-corrected event time; crawlers excluded. Keyed by the id of the
  visit's first event.
owner: analytics
tags: [clickstream]
columns:
  session_id: {description: The event_id of the session's first event.}
  visitor_id: {description: The device (anonymous_id, or user_id when there is none).}
  user_key: {description: "The stitched visitor: the user_id the device signed in as (ever), else its anonymous id."}
  channel: {description: "The landing event's channel (internal counts as direct)."}
  is_bounce: {description: Exactly one page view.}
  converted: {description: The session has a purchase.}
  revenue: {description: The sum of its orders' revenue.}
---*/
WITH events AS (
    SELECT * FROM refined.events WHERE NOT is_bot
),
gaps AS (
    SELECT
        *,
        event_time - lag(event_time) OVER (
            PARTITION BY visitor_id ORDER BY event_time, event_id
        ) AS since_previous
    FROM events
),
numbered AS (
    SELECT
        *,
        sum(CASE WHEN since_previous IS NULL OR since_previous > INTERVAL 30 MINUTE THEN 1 ELSE 0 END)
            OVER (PARTITION BY visitor_id ORDER BY event_time, event_id ROWS UNBOUNDED PRECEDING)
            AS session_number
    FROM gaps
),
sessions AS (
    SELECT
        visitor_id,
        session_number,
        arg_min(event_id, (event_time, event_id)) AS session_id,
        min(event_time) AS started_at,
        max(event_time) AS ended_at,
        count(*) AS events,
        count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
        count(*) FILTER (WHERE event_type = 'page_view' AND page_type = 'product') AS product_views,
        arg_min(page_path, (event_time, event_id)) FILTER (WHERE event_type = 'page_view')
            AS entry_page,
        arg_max(page_path, (event_time, event_id)) FILTER (WHERE event_type = 'page_view')
            AS exit_page,
        arg_min(page_url, (event_time, event_id)) AS landing_url,
        arg_min(channel, (event_time, event_id)) AS first_channel,
        arg_min(referrer_host, (event_time, event_id)) AS referrer_host,
        arg_min(utm_source, (event_time, event_id)) AS utm_source,
        arg_min(utm_medium, (event_time, event_id)) AS utm_medium,
        arg_min(utm_campaign, (event_time, event_id)) AS utm_campaign,
        arg_min(device_class, (event_time, event_id)) AS device_class,
        arg_min(browser, (event_time, event_id)) AS browser,
        arg_min(os, (event_time, event_id)) AS os,
        arg_min(locale, (event_time, event_id)) AS locale,
        max(user_id) AS user_id,
        bool_or(event_type = 'add_to_cart') AS added_to_cart,
        bool_or(event_type = 'checkout' OR page_type = 'checkout') AS reached_checkout,
        bool_or(event_type = 'purchase') AS converted,
        count(DISTINCT json_extract_string(properties, '$.order_id'))
            FILTER (WHERE event_type = 'purchase') AS orders,
        coalesce(
            sum(CAST(json_extract_string(properties, '$.revenue') AS DECIMAL(14, 2)))
                FILTER (WHERE event_type = 'purchase'),
            0
        )::DECIMAL(14, 2) AS revenue
    FROM numbered
    GROUP BY visitor_id, session_number
)
SELECT
    s.session_id,
    s.visitor_id,
    coalesce(i.user_id, s.visitor_id) AS user_key,
    coalesce(s.user_id, i.user_id) AS user_id,
    s.session_number,
    s.started_at,
    s.ended_at,
    (s.started_at AT TIME ZONE 'UTC')::DATE AS session_date,
    date_diff('millisecond', s.started_at, s.ended_at) / 1000.0 AS duration_seconds,
    s.events,
    s.page_views,
    s.product_views,
    s.entry_page,
    s.exit_page,
    s.landing_url,
    CASE WHEN s.first_channel = 'internal' THEN 'direct' ELSE s.first_channel END AS channel,
    s.referrer_host,
    s.utm_source,
    s.utm_medium,
    s.utm_campaign,
    s.device_class,
    s.browser,
    s.os,
    s.locale,
    s.page_views = 1 AS is_bounce,
    s.added_to_cart,
    s.reached_checkout,
    s.converted,
    s.orders,
    s.revenue
FROM sessions AS s
LEFT JOIN refined.identities AS i ON i.anonymous_id = s.visitor_id
