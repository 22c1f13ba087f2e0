/*---
materialized: table
description: >-
  Weekly retention: users (stitched user_key) by the ISO week of their first visit, and
  how many of them came back in each later week (week_number 0 is the first week).
owner: analytics
tags: [clickstream]
---*/
WITH visits AS (
    SELECT DISTINCT user_key, date_trunc('week', session_date)::DATE AS week
    FROM curated.fact_sessions
),
cohorts AS (
    SELECT user_key, min(week) AS cohort_week
    FROM visits
    GROUP BY user_key
),
sizes AS (
    SELECT cohort_week, count(*) AS cohort_users
    FROM cohorts
    GROUP BY cohort_week
)
SELECT
    c.cohort_week,
    (date_diff('day', c.cohort_week, v.week) // 7)::INTEGER AS week_number,
    s.cohort_users,
    count(DISTINCT v.user_key) AS active_users,
    count(DISTINCT v.user_key) / s.cohort_users AS retention
FROM cohorts AS c
JOIN visits AS v USING (user_key)
JOIN sizes AS s USING (cohort_week)
GROUP BY c.cohort_week, v.week, s.cohort_users
