/*---
materialized: table
description: >-
  The purchase funnel by day and landing channel: sessions, then those that viewed a
  product, added to the cart, reached checkout and purchased (each step a subset of the
  sessions, counted once per session).
owner: marketing
tags: [clickstream]
---*/
SELECT
    session_date AS date,
    channel,
    count(*) AS sessions,
    count(*) FILTER (WHERE product_views > 0) AS viewed_product,
    count(*) FILTER (WHERE added_to_cart) AS added_to_cart,
    count(*) FILTER (WHERE reached_checkout) AS reached_checkout,
    count(*) FILTER (WHERE converted) AS purchased,
    count(*) FILTER (WHERE converted) / count(*) AS conversion_rate,
    count(*) FILTER (WHERE converted) / nullif(count(*) FILTER (WHERE added_to_cart), 0)
        AS cart_to_purchase_rate
FROM curated.fact_sessions
GROUP BY session_date, channel
