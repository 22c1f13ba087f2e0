/*---
materialized: table
partition_by: day(ordered_at)
description: One row per order (purchase event of a human visitor), with its session, user version and campaign.
owner: sales
tags: [clickstream]
---*/
WITH purchases AS (
    SELECT
        e.*,
        from_json(
            json_extract(e.properties, '$.items'),
            '[{"product_id": "VARCHAR", "quantity": "BIGINT", "price": "DECIMAL(12,2)"}]'
        ) AS items
    FROM refined.events AS e
    WHERE e.event_type = 'purchase' AND NOT e.is_bot
)
SELECT
    json_extract_string(p.properties, '$.order_id') AS order_id,
    p.event_id,
    p.event_time AS ordered_at,
    CAST(strftime(p.event_time AT TIME ZONE 'UTC', '%Y%m%d') AS INTEGER) AS date_key,
    s.session_id,
    s.user_key,
    u.user_sk,
    c.campaign_key,
    s.channel,
    s.device_class,
    CAST(json_extract_string(p.properties, '$.revenue') AS DECIMAL(14, 2)) AS revenue,
    json_extract_string(p.properties, '$.currency') AS currency,
    json_extract_string(p.properties, '$.cart_id') AS cart_id,
    len(p.items) AS items,
    list_sum(list_transform(p.items, x -> x.quantity)) AS units
FROM purchases AS p
LEFT JOIN refined.sessions AS s
    ON s.visitor_id = p.visitor_id AND p.event_time BETWEEN s.started_at AND s.ended_at
LEFT JOIN curated.dim_campaigns AS c
    ON c.utm_source IS NOT DISTINCT FROM s.utm_source
    AND c.utm_medium IS NOT DISTINCT FROM s.utm_medium
    AND c.utm_campaign IS NOT DISTINCT FROM s.utm_campaign
LEFT JOIN curated.dim_users AS u
    ON u.user_key = s.user_key
    AND p.event_time >= u.valid_from
    AND p.event_time < coalesce(u.valid_to, 'infinity'::TIMESTAMPTZ)
