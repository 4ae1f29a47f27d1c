-- Every SQL statement of the pricing handler, in one file (loaded by outbox.sql.Queries).
-- The handler runs inside the drainer's transaction; the drainer hands it a
-- product's results one batch at a time (docs/guarantees.md#per-key-order).

-- name: crawl_result_record_batch
-- The whole handler in one statement: the results behind a batch of events, the
-- criteria, the per-product rules, the history rows and every result's outcome.
-- pricing.auto_record.should_auto_record is the reference of the criteria; a test
-- checks that both agree on every case (tests/integration/test_auto_record_sql.py).
-- Per product, in crawl order then outbox order: a result crawled before the
-- product's latest history is stale; one whose price and currency equal those of
-- the eligible result before it (or of the latest history, for the first) is an
-- unchanged price; so lag() over the eligible results decides what a loop would.
-- ON CONFLICT: crawl_result_id is the idempotency key; a conflict means another
-- writer recorded the result meanwhile: duplicate/already_recorded. The update sets
-- only columns no index covers, so it is HOT (migrations/0003_write_path.py).
-- Returns each outcome's count, and one row per event that cannot be handled
-- (no such result, a key that is no UUID, a crawled_at that is not finite).
WITH batch AS (
    -- One row per result (two events of one result: the first decides, both are done).
    SELECT DISTINCT ON (b.key) b.event_id, b.key,
           CASE WHEN b.key ~ '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$' THEN b.key::uuid END AS result_id
    FROM unnest(%(event_ids)s::bigint[], %(keys)s::text[]) AS b(event_id, key)
    ORDER BY b.key, b.event_id
),
found AS MATERIALIZED (
    SELECT b.event_id, b.key, b.result_id, cr.id, cr.product_id, cr.source, cr.price, cr.currency, cr.confidence,
           cr.crawled_at, cr.history_recorded
    FROM batch AS b
    LEFT JOIN pricing_crawlresult AS cr ON cr.id = b.result_id
),
latest AS (
    SELECT p.product_id, h.price, h.currency, h.crawled_at
    FROM (SELECT DISTINCT product_id FROM found WHERE product_id IS NOT NULL) AS p
    CROSS JOIN LATERAL (
        SELECT h.price, h.currency, h.crawled_at
        FROM pricing_pricehistory AS h
        WHERE h.product_id = p.product_id
        ORDER BY h.crawled_at DESC, h.id DESC
        LIMIT 1
    ) AS h
),
decided AS (
    SELECT f.*, l.price AS latest_price, l.currency AS latest_currency,
           CASE
               WHEN f.result_missing THEN 'missing'
               WHEN f.history_recorded THEN 'already_recorded'
               WHEN NOT %(enabled)s THEN 'disabled'
               WHEN f.source <> ALL(%(allowed_sources)s::text[]) THEN 'source_not_allowed'
               -- NaN sorts above every number in PostgreSQL: > 1 catches it.
               WHEN f.confidence IS NULL OR f.confidence < 0 OR f.confidence > 1 THEN 'invalid_confidence'
               WHEN f.confidence < %(min_confidence)s THEN 'low_confidence'
               WHEN f.price IS NULL OR f.price IN ('NaN', 'Infinity') OR f.price <= 0 THEN 'invalid_price'
               -- Python's datetime holds years 1 to 9999; the table's CHECK says the same.
               WHEN NOT (f.crawled_at >= '0001-01-01' AND f.crawled_at < '10000-01-01') THEN 'bad_crawled_at'
               WHEN f.crawled_at < l.crawled_at THEN 'stale'
               ELSE 'eligible'
           END AS verdict
    FROM (SELECT found.*, found.id IS NULL AS result_missing FROM found) AS f
    LEFT JOIN latest AS l ON l.product_id = f.product_id
),
eligible AS (
    SELECT d.event_id, d.id, d.product_id, d.price, d.currency, d.source, d.crawled_at,
           CASE
               WHEN NOT %(skip_unchanged_price)s THEN 'recorded'
               WHEN (d.price, d.currency) IS NOT DISTINCT FROM (
                        coalesce(lag(d.price) OVER w, d.latest_price),
                        coalesce(lag(d.currency) OVER w, d.latest_currency))
                   THEN 'unchanged_price'
               ELSE 'recorded'
           END AS verdict
    FROM decided AS d
    WHERE d.verdict = 'eligible'
    WINDOW w AS (PARTITION BY d.product_id ORDER BY d.crawled_at, d.event_id)
),
recorded AS (
    INSERT INTO pricing_pricehistory (product_id, price, currency, source, crawled_at, recorded_at, crawl_result_id)
    SELECT e.product_id, e.price, e.currency, e.source, e.crawled_at, now(), e.id
    FROM eligible AS e
    WHERE e.verdict = 'recorded'
    ORDER BY e.product_id, e.crawled_at, e.event_id
    ON CONFLICT (crawl_result_id) DO NOTHING
    RETURNING crawl_result_id
),
outcome AS MATERIALIZED (
    -- IN (SELECT ...) is one hashed subplan; a join to the CTE was a nested loop.
    SELECT d.id,
           coalesce(e.verdict, d.verdict) AS reason,
           coalesce(e.verdict, d.verdict) = 'recorded' AND d.id IN (SELECT crawl_result_id FROM recorded) AS inserted
    FROM decided AS d
    LEFT JOIN eligible AS e ON e.event_id = d.event_id
    WHERE d.verdict NOT IN ('missing', 'bad_crawled_at')
),
updated AS (
    UPDATE pricing_crawlresult AS cr
    SET history_record_status = CASE
            WHEN o.inserted THEN 'recorded'
            WHEN o.reason IN ('recorded', 'already_recorded', 'unchanged_price') THEN 'duplicate'
            ELSE 'skipped'
        END,
        history_record_reason = CASE
            WHEN o.inserted THEN 'eligible'
            WHEN o.reason = 'recorded' THEN 'already_recorded'
            ELSE o.reason
        END,
        history_recorded = cr.history_recorded OR o.inserted,
        history_recorded_at = CASE WHEN o.inserted THEN now() ELSE cr.history_recorded_at END
    FROM outcome AS o
    WHERE cr.id = o.id
    RETURNING cr.history_record_status
)
SELECT history_record_status, count(*), NULL::bigint, NULL::text
FROM updated
GROUP BY history_record_status
UNION ALL
SELECT 'failed', 0, d.event_id,
       CASE
           WHEN d.result_id IS NULL THEN format('event key %%L is not a CrawlResult id (a UUID)', d.key)
           WHEN d.verdict = 'missing'
               THEN format('CrawlResult %%s does not exist (deleted after its event was written?)', d.key)
           ELSE format('CrawlResult %%s cannot be judged: its crawled_at %%s is outside the years 1 to 9999; '
                       'fix or delete the row, then retry its event (pricing_crawlresult''s CHECK constraints '
                       'refuse such values)', d.key, d.crawled_at)
       END
FROM decided AS d
WHERE d.verdict IN ('missing', 'bad_crawled_at');

-- name: crawl_result_mark_failed
-- The outbox gave up on these results' events: say so on the results.
UPDATE pricing_crawlresult
SET history_record_status = 'failed',
    history_record_reason = %(reason)s
WHERE id = ANY(%(ids)s::uuid[]);

-- ===== operations =====
-- The pricing admin.

-- name: crawl_result_sources
-- The source filter's choices without a DISTINCT over the whole table: the
-- column's most common values from ANALYZE, plus the sources among the first
-- %(sample)s rows (all of them on a small table that has no statistics yet).
SELECT source
FROM (
    SELECT unnest(st.most_common_vals::text::text[]) AS source
    FROM pg_stats AS st
    WHERE st.schemaname = (
              SELECT n.nspname
              FROM pg_class AS c
              JOIN pg_namespace AS n ON n.oid = c.relnamespace
              WHERE c.oid = 'pricing_crawlresult'::regclass
          )
      AND st.tablename = 'pricing_crawlresult'
      AND st.attname = 'source'
    UNION
    SELECT sampled.source
    FROM (SELECT source FROM pricing_crawlresult LIMIT %(sample)s) AS sampled
) AS sources
ORDER BY source;
