/*---
materialized: incremental
incremental_strategy: merge
unique_key: event_id
partition_by: day(event_time)
description: >-
  Clickstream events, one row per event_id (the earliest received copy), with crawlers
  flagged, the user agent parsed, the referrer classified, UTM parameters extracted and
  the time corrected for the device's clock skew. Reads only the raw events appended
  since the last run.
owner: analytics
tags: [clickstream]
columns:
  event_time: {description: "Skew-corrected time: the collector's derived_time, the device's event time moved by the device clock's offset from the collector (sent_at - received_at), unless sent_at is more than an hour before received_at (a delayed delivery: the device's time)."}
  device_time: {description: The event time as the device's clock said it.}
  clock_skew_ms: {description: "sent_at - received_at: how far ahead the device clock was (network delay included)."}
  is_bot: {description: The user agent is a crawler or a script; excluded from every downstream model.}
  channel: {description: "direct, search, social, email, paid, internal or referral: UTM medium first, then the referrer's host."}
  user_id: {description: The signed-in user., tags: [pii]}
  ip: {description: The device's IP address., tags: [pii]}
---*/
WITH new_rows AS (
    -- events received once (most of them): no deduplication to do
    SELECT r.*
    FROM raw.events AS r
    LEFT JOIN refined.event_receipts AS x ON x.event_id = r.event_id
    WHERE x.event_id IS NULL
    UNION ALL
    -- repeated events: a retry whose first copy arrived earlier (in this run or a previous
    -- one) is dropped; of copies received at the same instant one is kept
    SELECT r.*
    FROM raw.events AS r
    JOIN refined.event_receipts AS x
        ON x.event_id = r.event_id AND r.received_at = x.first_received_at
    QUALIFY row_number() OVER (
        PARTITION BY r.event_id ORDER BY r.received_at
    ) = 1
),
parsed AS (
    SELECT
        *,
        page.url AS page_url,
        page.referrer AS referrer,
        page.title AS page_title,
        context.user_agent AS user_agent,
        context.ip AS ip,
        context.locale AS locale,
        lower(regexp_extract(page.url, '^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#:]+)', 1)) AS page_host,
        lower(regexp_extract(page.referrer, '^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#:]+)', 1))
            AS referrer_host,
        nullif(regexp_extract(page.url, '^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]+(/[^?#]*)', 1), '')
            AS raw_path,
        nullif(url_decode(regexp_extract(page.url, '[?&]utm_source=([^&#]*)', 1)), '')
            AS utm_source,
        nullif(url_decode(regexp_extract(page.url, '[?&]utm_medium=([^&#]*)', 1)), '')
            AS utm_medium,
        nullif(url_decode(regexp_extract(page.url, '[?&]utm_campaign=([^&#]*)', 1)), '')
            AS utm_campaign,
        nullif(url_decode(regexp_extract(page.url, '[?&]utm_term=([^&#]*)', 1)), '') AS utm_term,
        nullif(url_decode(regexp_extract(page.url, '[?&]utm_content=([^&#]*)', 1)), '')
            AS utm_content,
        coalesce(
            regexp_matches(
                context.user_agent,
                '(?i)(bot|crawl|spider|slurp|archiver|python-requests|python-urllib|curl/|wget/|'
                || 'go-http-client|java/|httpclient|okhttp|headless|phantomjs|scrapy)'
            ),
            false
        ) AS is_bot,
        -- the device clock's offset from the collector's, network delay included
        epoch_ms(sent_at) - epoch_ms(received_at) AS clock_skew_ms
    FROM new_rows
)
SELECT
    event_id,
    event_type,
    -- skew-corrected: the collector's derived_time, the device's time moved by its clock's
    -- offset (without sent_at there is no offset: the device's time), as the stream
    -- pipelines use it. A device clock ahead is always an error of the clock, however far;
    -- sent_at over an hour before received_at is a delivery delay (a replay, a stuck queue)
    -- rather than a clock's error, and correcting by it would move the event to its delivery
    CASE
        WHEN clock_skew_ms < -3600000 THEN event_time
        ELSE derived_time
    END AS event_time,
    event_time AS device_time,
    sent_at,
    received_at,
    clock_skew_ms,
    app_id,
    user_id,
    anonymous_id,
    coalesce(anonymous_id, user_id) AS visitor_id,
    session_id AS client_session_id,
    page_url,
    page_host,
    coalesce(raw_path, '/') AS page_path,
    CASE
        WHEN coalesce(raw_path, '/') = '/' THEN 'home'
        WHEN raw_path LIKE '/c/%' THEN 'category'
        WHEN raw_path LIKE '/p/%' THEN 'product'
        WHEN raw_path = '/search' THEN 'search'
        WHEN raw_path = '/cart' THEN 'cart'
        WHEN raw_path = '/checkout/confirmation' THEN 'confirmation'
        WHEN raw_path LIKE '/checkout/%' THEN 'checkout'
        ELSE 'other'
    END AS page_type,
    page_title,
    referrer,
    referrer_host,
    CASE
        WHEN utm_medium IS NOT NULL AND regexp_matches(lower(utm_medium), 'social')
            THEN 'social'
        WHEN utm_medium IS NOT NULL AND regexp_matches(lower(utm_medium), '^e-?mail$|newsletter')
            THEN 'email'
        WHEN utm_medium IS NOT NULL
            AND regexp_matches(lower(utm_medium), '^(cpc|ppc|cpm|cpv|paid.*|display|affiliate|banner)$')
            THEN 'paid'
        WHEN referrer_host IS NULL OR referrer_host = '' THEN 'direct'
        WHEN referrer_host = page_host THEN 'internal'
        WHEN regexp_matches(referrer_host, '^(mail\.|outlook\.|webmail\.)') THEN 'email'
        WHEN regexp_matches(
            referrer_host,
            '(^|\.)(google|bing|duckduckgo|yahoo|ecosia|baidu|yandex|ask|startpage|qwant)\.[a-z.]+$'
        ) THEN 'search'
        WHEN regexp_matches(
            referrer_host,
            '(^|\.)(facebook\.com|fb\.com|instagram\.com|t\.co|twitter\.com|x\.com|reddit\.com|'
            || 'pinterest\.[a-z.]+|tiktok\.com|linkedin\.com|lnkd\.in|youtube\.com|snapchat\.com)$'
        ) THEN 'social'
        ELSE 'referral'
    END AS channel,
    utm_source,
    utm_medium,
    utm_campaign,
    utm_term,
    utm_content,
    user_agent,
    is_bot,
    CASE
        WHEN is_bot THEN 'Bot'
        WHEN regexp_matches(user_agent, 'Edg(e|A|iOS)?/') THEN 'Edge'
        WHEN regexp_matches(user_agent, '(OPR|Opera)/') THEN 'Opera'
        WHEN regexp_matches(user_agent, 'SamsungBrowser/') THEN 'Samsung Internet'
        WHEN regexp_matches(user_agent, '(Firefox|FxiOS)/') THEN 'Firefox'
        WHEN regexp_matches(user_agent, '(Chrome|CriOS)/') THEN 'Chrome'
        WHEN regexp_matches(user_agent, 'Version/[0-9.]+.*Safari/') THEN 'Safari'
        ELSE 'Other'
    END AS browser,
    nullif(
        CASE
            WHEN is_bot THEN ''
            WHEN regexp_matches(user_agent, 'Edg(e|A|iOS)?/')
                THEN regexp_extract(user_agent, 'Edg(?:e|A|iOS)?/([0-9]+)', 1)
            WHEN regexp_matches(user_agent, '(OPR|Opera)/')
                THEN regexp_extract(user_agent, '(?:OPR|Opera)/([0-9]+)', 1)
            WHEN regexp_matches(user_agent, 'SamsungBrowser/')
                THEN regexp_extract(user_agent, 'SamsungBrowser/([0-9]+)', 1)
            WHEN regexp_matches(user_agent, '(Firefox|FxiOS)/')
                THEN regexp_extract(user_agent, '(?:Firefox|FxiOS)/([0-9]+)', 1)
            WHEN regexp_matches(user_agent, '(Chrome|CriOS)/')
                THEN regexp_extract(user_agent, '(?:Chrome|CriOS)/([0-9]+)', 1)
            ELSE regexp_extract(user_agent, 'Version/([0-9]+)', 1)
        END,
        ''
    ) AS browser_version,
    CASE
        WHEN is_bot THEN 'Bot'
        WHEN regexp_matches(user_agent, 'iPhone|iPad|iPod|CPU (iPhone )?OS [0-9_]+ like Mac OS X')
            THEN 'iOS'
        WHEN regexp_matches(user_agent, 'Android') THEN 'Android'
        WHEN regexp_matches(user_agent, 'Windows NT|Windows Phone') THEN 'Windows'
        WHEN regexp_matches(user_agent, 'Mac OS X|Macintosh') THEN 'macOS'
        WHEN regexp_matches(user_agent, 'CrOS') THEN 'ChromeOS'
        WHEN regexp_matches(user_agent, 'Linux|X11') THEN 'Linux'
        ELSE 'Other'
    END AS os,
    CASE
        WHEN is_bot THEN 'bot'
        WHEN regexp_matches(user_agent, '(?i)iPad|Tablet|Kindle|Silk/|PlayBook') THEN 'tablet'
        -- Android tablets are the Android devices that do not say Mobile
        WHEN regexp_matches(user_agent, 'Android') AND NOT regexp_matches(user_agent, 'Mobile')
            THEN 'tablet'
        WHEN regexp_matches(user_agent, '(?i)Mobi|iPhone|iPod|Android|Windows Phone') THEN 'mobile'
        ELSE 'desktop'
    END AS device_class,
    ip,
    locale,
    properties,
    flags
FROM parsed
