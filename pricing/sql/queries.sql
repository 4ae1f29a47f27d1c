-- Every SQL statement of the pricing handler, in one file (loaded by outbox.sql.Queries).
-- The handler runs inside the drainer's transaction, after the drainer has taken
-- a transaction-level advisory lock on every product in the batch.

-- name: crawl_result_fetch_batch
-- The results behind a batch of events, each with whether it already has history
-- (history_recorded: set in the transaction that writes the row; history written
-- by anything else is caught by the insert's ON CONFLICT) and its product's latest
-- recorded price (one probe of pricing_ph_product_latest per result, however long
-- the product's history is). One statement, so a batch of one costs one round trip.
SELECT cr.id, cr.product_id, cr.source, cr.price, cr.currency, cr.confidence, cr.crawled_at,
       cr.history_recorded AS has_history,
       latest.price, latest.currency, latest.crawled_at
FROM pricing_crawlresult AS cr
LEFT JOIN LATERAL (
    SELECT h.price, h.currency, h.crawled_at
    FROM pricing_pricehistory AS h
    WHERE h.product_id = cr.product_id
    ORDER BY h.crawled_at DESC, h.id DESC
    LIMIT 1
) AS latest ON true
WHERE cr.id = ANY(%(ids)s::uuid[]);

-- name: crawl_result_record_batch
-- Every write of a batch in one statement: the history rows of the results
-- decided 'recorded', then every result's outcome. %(rows)s is one JSON array of
-- records (outbox.sql.json_records), n numbering them in the order the handler
-- decided them (per product: crawl order, ties in outbox order); the history rows
-- are inserted in that order, so each product's history ids follow it. ON CONFLICT: crawl_result_id is the idempotency
-- key; the handler decided under the product lock, so a conflict means another
-- writer recorded the result meanwhile, and the result is marked
-- duplicate/already_recorded instead. The update sets columns no index covers,
-- so on a page with room (the table's fill factor) it is HOT
-- (pricing/migrations/0003_write_path.py). Returns each result's final status.
WITH outcome AS (
    SELECT *
    FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS r(id uuid, status text, reason text, product_id bigint, price numeric, currency text,
             source text, crawled_at timestamptz, n bigint)
),
recorded AS (
    INSERT INTO pricing_pricehistory (product_id, price, currency, source, crawled_at, recorded_at, crawl_result_id)
    SELECT o.product_id, o.price, o.currency, o.source, o.crawled_at, now(), o.id
    FROM outcome AS o
    WHERE o.status = 'recorded'
    ORDER BY o.n
    ON CONFLICT (crawl_result_id) DO NOTHING
    RETURNING crawl_result_id
),
inserted AS MATERIALIZED (
    -- IN (SELECT ...) is one hashed subplan (MATERIALIZED: computed once). A LEFT
    -- JOIN to the CTE was planned as a nested loop over it: 250,000 comparisons,
    -- 65 ms, for a batch of 500.
    SELECT o.id, o.status, o.reason, o.id IN (SELECT crawl_result_id FROM recorded) AS recorded
    FROM outcome AS o
),
final AS (
    SELECT i.id,
           CASE WHEN i.status = 'recorded' AND NOT i.recorded THEN 'duplicate' ELSE i.status END AS status,
           CASE WHEN i.status = 'recorded' AND NOT i.recorded THEN 'already_recorded' ELSE i.reason END AS reason,
           i.recorded
    FROM inserted AS i
)
UPDATE pricing_crawlresult AS cr
SET history_record_status = f.status,
    history_record_reason = f.reason,
    history_recorded = cr.history_recorded OR f.recorded,
    history_recorded_at = CASE WHEN f.recorded THEN now() ELSE cr.history_recorded_at END
FROM final AS f
WHERE cr.id = f.id
RETURNING f.status;

-- name: crawl_result_mark_failed
-- The outbox gave up on these results' events: say so on the results.
UPDATE pricing_crawlresult
SET history_record_status = 'failed',
    history_record_reason = %(reason)s
WHERE id = ANY(%(ids)s::uuid[]);

-- ===== operations =====
-- outbox_backfill and the pricing admin.

-- name: crawl_result_backfill_select
-- Step 1 of a backfill: the results to enqueue, numbered in crawl order (the order
-- the old design's queue would have had them, so history is written oldest first
-- and no result is skipped as stale because a newer one went ahead of it). One
-- sort, kept in a temporary table of this session, so each chunk after it is an
-- index range instead of a re-scan. Returns how many were selected.
-- The predicate, also re-checked at insert time (a drainer may have processed a
-- result since): the result's history_record_status is NULL (not yet processed)
-- when %(unprocessed)s, or one of %(statuses)s; crawled at or after %(since)s;
-- from one of %(sources)s; one of %(ids)s. Each NULL parameter means "any".
CREATE TEMPORARY TABLE pricing_backfill_selection AS
SELECT row_number() OVER (ORDER BY cr.crawled_at, cr.id) AS n, cr.id
FROM pricing_crawlresult AS cr
WHERE ((%(unprocessed)s AND cr.history_record_status IS NULL)
       OR cr.history_record_status = ANY(%(statuses)s::text[]))
  AND (%(since)s::timestamptz IS NULL OR cr.crawled_at >= %(since)s::timestamptz)
  AND (%(sources)s::text[] IS NULL OR cr.source = ANY(%(sources)s::text[]))
  AND (%(ids)s::uuid[] IS NULL OR cr.id = ANY(%(ids)s::uuid[]));

-- name: crawl_result_backfill_index
ALTER TABLE pricing_backfill_selection ADD PRIMARY KEY (n);

-- name: crawl_result_backfill_lock
-- Taken in each chunk's transaction before its insert: two backfills running at
-- once take turns, so the second one's NOT EXISTS (a new snapshot, the next
-- statement) sees the events the first one committed. Released at commit.
SELECT pg_advisory_xact_lock(hashtext('pricing.outbox_backfill'));

-- name: crawl_result_backfill_chunk
-- Step 2, once per chunk, in its own short transaction: one INSERT ... SELECT
-- for the results numbered (%(after)s, %(after)s + %(chunk)s], with exactly the
-- payload the trigger writes (pricing/migrations/0001_initial.py), in crawl
-- order. Idempotent: a result that already has a pending event of this topic
-- (outbox_event_key_idx) gets none, and the predicate is checked again, so a
-- result processed since it was selected is left alone. Returns how many of the
-- chunk's results were still selected and how many events were written.
WITH chunk AS (
    SELECT b.n, cr.*
    FROM pricing_backfill_selection AS b
    JOIN pricing_crawlresult AS cr ON cr.id = b.id
    WHERE b.n > %(after)s
      AND b.n <= %(after)s + %(chunk)s
      AND ((%(unprocessed)s AND cr.history_record_status IS NULL)
           OR cr.history_record_status = ANY(%(statuses)s::text[]))
),
enqueued AS (
    INSERT INTO outbox_event (topic, key, payload)
    SELECT %(topic)s, c.id::text,
           jsonb_build_object('product_id', c.product_id, 'source', c.source, 'price', c.price,
                              'currency', c.currency, 'confidence', c.confidence, 'crawled_at', c.crawled_at)
    FROM chunk AS c
    WHERE NOT EXISTS (
        SELECT 1
        FROM outbox_event AS e
        WHERE e.key = c.id::text
          AND e.topic = %(topic)s
          AND e.status = 'pending'
    )
    ORDER BY c.n
    RETURNING 1
)
SELECT (SELECT count(*) FROM chunk), (SELECT count(*) FROM enqueued);

-- name: crawl_result_backfill_notify
-- Wake idle drainers once per chunk that wrote events, like the trigger's NOTIFY
-- (and, like it, not when the outbox.notify setting is off).
SELECT pg_notify(%(channel)s, %(topic)s)
WHERE coalesce(current_setting('outbox.notify', true), 'on') <> 'off';

-- name: crawl_result_backfill_drop
DROP TABLE IF EXISTS pricing_backfill_selection;

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
