/*---
materialized: snapshot
unique_key: product_id
check_cols: [name, category, price, currency]
description: >-
  Products as type 2 history: the latest export of the shop's catalogue feed
  (raw.product_catalog, appended by fluvial.examples.clickstream.load_catalogue); a
  product whose name, category or price changed gets a new version valid from the run
  that saw the change.
owner: merchandising
tags: [clickstream]
columns:
  price: {description: The list price in the currency.}
  valid_from: {description: The run that first saw this version.}
  valid_to: {description: The run that saw it replaced (null while current).}
---*/
SELECT
    product_id,
    arg_max(name, exported_at) AS name,
    arg_max(category, exported_at) AS category,
    arg_max(price, exported_at) AS price,
    arg_max(currency, exported_at) AS currency
FROM raw.product_catalog
GROUP BY product_id
