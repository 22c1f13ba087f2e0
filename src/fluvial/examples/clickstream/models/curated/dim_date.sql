/*---
materialized: table
description: One row per calendar day (UTC) from the first event's day to the last's.
owner: analytics
tags: [clickstream]
columns:
  date_key: {description: "yyyymmdd as an integer: the facts' date_key."}
---*/
WITH bounds AS (
    SELECT
        min((event_time AT TIME ZONE 'UTC')::DATE) AS first_day,
        max((event_time AT TIME ZONE 'UTC')::DATE) AS last_day
    FROM refined.events
),
days AS (
    SELECT unnest(generate_series(first_day, last_day, INTERVAL 1 DAY))::DATE AS day
    FROM bounds
    WHERE first_day IS NOT NULL
)
SELECT
    CAST(strftime(day, '%Y%m%d') AS INTEGER) AS date_key,
    day AS date,
    year(day) AS year,
    quarter(day) AS quarter,
    month(day) AS month,
    monthname(day) AS month_name,
    isoyear(day) AS iso_year,
    week(day) AS iso_week,
    date_trunc('week', day)::DATE AS week_start,
    isodow(day) AS day_of_week,
    dayname(day) AS day_name,
    isodow(day) >= 6 AS is_weekend
FROM days
