/*---
materialized: table
description: >-
  Visitors as type 2 history on event time, after identity stitching: a device that
  signed in is one user with every other device that signed in as the same user_id
  (user_key = user_id), and its anonymous visits before sign-in belong to that user.
  A user has an anonymous version from its first visit until it was identified, then a
  version per change of its traits (email, plan) from identify calls.
owner: analytics
tags: [clickstream]
columns:
  user_sk: {description: "The version's surrogate key: md5 of user_key and valid_from."}
  user_key: {description: The stitched visitor (user_id, or the anonymous id of a device never identified).}
  email: {description: From the identify call's traits., tags: [pii]}
  user_id: {tags: [pii]}
---*/
WITH visitors AS (
    SELECT
        e.visitor_id,
        coalesce(i.user_id, e.visitor_id) AS user_key,
        min(e.event_time) AS first_seen_at,
        max(e.event_time) AS last_seen_at
    FROM refined.events AS e
    LEFT JOIN refined.identities AS i ON i.anonymous_id = e.visitor_id
    WHERE NOT e.is_bot
    GROUP BY e.visitor_id, coalesce(i.user_id, e.visitor_id)
),
users AS (
    SELECT
        user_key,
        min(first_seen_at) AS first_seen_at,
        max(last_seen_at) AS last_seen_at,
        count(*) AS devices
    FROM visitors
    GROUP BY user_key
),
signed_in AS (
    SELECT
        user_id,
        event_time,
        event_type,
        json_extract_string(properties, '$.traits.email') AS email,
        json_extract_string(properties, '$.traits.plan') AS plan
    FROM refined.events
    WHERE NOT is_bot AND user_id IS NOT NULL
),
states AS (
    -- anonymous from the first visit
    SELECT user_key, first_seen_at AS valid_from, NULL AS user_id, NULL AS email,
           NULL AS plan, false AS is_identified
    FROM users
    UNION ALL
    -- each identify call's traits
    SELECT user_id, event_time, user_id, email, plan, true
    FROM signed_in
    WHERE event_type = 'identify'
    UNION ALL
    -- signed in, but no identify call in the data: identified, traits unknown
    SELECT user_id, min(event_time), user_id, NULL, NULL, true
    FROM signed_in
    GROUP BY user_id
    HAVING NOT bool_or(event_type = 'identify')
),
ranked AS (
    SELECT
        *,
        min(CASE WHEN is_identified THEN valid_from END) OVER (PARTITION BY user_key)
            AS identified_at
    FROM states
),
kept AS (
    -- the anonymous version only when the user was seen before being identified
    SELECT * FROM ranked
    WHERE is_identified OR identified_at IS NULL OR valid_from < identified_at
),
changes AS (
    SELECT
        *,
        lag(struct_pack(user_id, email, plan, is_identified)) OVER (
            PARTITION BY user_key ORDER BY valid_from, is_identified
        ) AS previous
    FROM kept
),
versions AS (
    SELECT *
    FROM changes
    WHERE previous IS NULL
        OR previous IS DISTINCT FROM struct_pack(user_id, email, plan, is_identified)
)
SELECT
    md5(v.user_key || '|' || CAST(epoch_us(v.valid_from) AS VARCHAR)) AS user_sk,
    v.user_key,
    v.user_id,
    v.email,
    v.plan,
    v.is_identified,
    u.devices,
    u.first_seen_at,
    u.last_seen_at,
    v.identified_at,
    row_number() OVER (PARTITION BY v.user_key ORDER BY v.valid_from) AS version,
    v.valid_from,
    lead(v.valid_from) OVER (PARTITION BY v.user_key ORDER BY v.valid_from) AS valid_to,
    lead(v.valid_from) OVER (PARTITION BY v.user_key ORDER BY v.valid_from) IS NULL
        AS is_current
FROM versions AS v
JOIN users AS u USING (user_key)
