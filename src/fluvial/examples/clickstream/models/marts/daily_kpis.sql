/*---
materialized: table
description: >-
  The shop's day (UTC): visitors, sessions, page views, bounce rate, orders, revenue and
  conversion. Sessions count on the day they started, orders on the day they were placed.
owner: analytics
tags: [clickstream]
columns:
  visitors: {description: Distinct stitched users (user_key) with a session that day.}
  bounce_rate: {description: Share of sessions with exactly one page view.}
  conversion_rate: {description: Share of sessions with a purchase.}
---*/
WITH sessions AS (
    SELECT
        session_date AS date,
        count(DISTINCT user_key) AS visitors,
        count(*) AS sessions,
        sum(page_views)::BIGINT AS page_views,
        avg(CASE WHEN is_bounce THEN 1.0 ELSE 0.0 END) AS bounce_rate,
        avg(CASE WHEN converted THEN 1.0 ELSE 0.0 END) AS conversion_rate,
        avg(duration_seconds) AS avg_session_seconds
    FROM curated.fact_sessions
    GROUP BY session_date
),
orders AS (
    SELECT
        (ordered_at AT TIME ZONE 'UTC')::DATE AS date,
        count(*) AS orders,
        sum(revenue)::DECIMAL(18, 2) AS revenue
    FROM curated.fact_orders
    GROUP BY 1
)
SELECT
    d.date_key,
    d.date,
    coalesce(s.visitors, 0) AS visitors,
    coalesce(s.sessions, 0) AS sessions,
    coalesce(s.page_views, 0) AS page_views,
    s.bounce_rate,
    s.avg_session_seconds,
    coalesce(o.orders, 0) AS orders,
    coalesce(o.revenue, 0)::DECIMAL(18, 2) AS revenue,
    s.conversion_rate,
    (o.revenue / nullif(o.orders, 0))::DECIMAL(18, 2) AS avg_order_value
FROM curated.dim_date AS d
LEFT JOIN sessions AS s ON s.date = d.date
LEFT JOIN orders AS o ON o.date = d.date
