/*---
materialized: table
partition_by: day(ordered_at)
description: One row per line of an order (a product and its quantity), at the price paid.
owner: sales
tags: [clickstream]
columns:
  line: {description: The line's position in the order, from 1.}
  unit_price: {description: The price paid per unit (from the purchase event).}
  list_price: {description: "The catalogue's list price when the order was placed: the dim_products version valid at ordered_at (valid_from <= ordered_at < valid_to, the current version's valid_to being null); an order older than a product's first version gets that first version, the earliest price known."}
---*/
WITH lines AS (
    SELECT
        json_extract_string(e.properties, '$.order_id') AS order_id,
        generate_subscripts(items, 1) AS line,
        unnest(items) AS item
    FROM (
        SELECT
            properties,
            from_json(
                json_extract(properties, '$.items'),
                '[{"product_id": "VARCHAR", "quantity": "BIGINT", "price": "DECIMAL(12,2)"}]'
            ) AS items
        FROM refined.events
        WHERE event_type = 'purchase' AND NOT is_bot
    ) AS e
),
product_versions AS (
    SELECT
        *,
        -- the first version also covers the time before the catalogue was first exported
        valid_from = min(valid_from) OVER (PARTITION BY product_id) AS is_first
    FROM curated.dim_products
)
SELECT
    l.order_id,
    l.line,
    o.ordered_at,
    o.date_key,
    o.session_id,
    o.user_key,
    o.user_sk,
    l.item.product_id AS product_id,
    l.item.quantity AS quantity,
    l.item.price AS unit_price,
    CAST(l.item.quantity * l.item.price AS DECIMAL(14, 2)) AS line_total,
    p.price AS list_price,
    p.category
FROM lines AS l
JOIN curated.fact_orders AS o USING (order_id)
LEFT JOIN product_versions AS p
    ON p.product_id = l.item.product_id
    AND (o.ordered_at >= p.valid_from OR p.is_first)
    AND (p.valid_to IS NULL OR o.ordered_at < p.valid_to)
