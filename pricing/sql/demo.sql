-- Every SQL statement of the demo (manage.py outbox_demo), in one file.
-- Loaded by outbox.sql.Queries like pricing/sql/queries.sql. The demo owns only the
-- products whose sku starts with its prefix (DEMO-) and the rows hanging off them.
-- A run is told apart from earlier runs by an outbox watermark: its events have
-- ids above the largest id that existed when it started.

-- name: demo_product_ids
-- The demo's products (sku prefix), oldest first.
SELECT id
FROM pricing_product
WHERE starts_with(sku, %(prefix)s)
ORDER BY id;

-- name: demo_reset_events
-- Outbox events of the demo's products. Events have no foreign key to their
-- result (the outbox knows nothing of pricing), so they are found by the
-- product_id that the trigger copies into the payload; this also finds the
-- events whose result was deleted, which a join to pricing_crawlresult would miss.
-- Compared as text so that an event with an odd payload can never break the reset.
DELETE FROM outbox_event
WHERE topic = %(topic)s
  AND payload ->> 'product_id' = ANY(%(product_ids)s::text[]);

-- name: demo_reset_history
-- Django emulates ON DELETE CASCADE in Python; in SQL the children go first.
DELETE FROM pricing_pricehistory
WHERE product_id = ANY(%(product_ids)s::bigint[]);

-- name: demo_reset_results
DELETE FROM pricing_crawlresult
WHERE product_id = ANY(%(product_ids)s::bigint[]);

-- name: demo_reset_products
DELETE FROM pricing_product
WHERE id = ANY(%(product_ids)s::bigint[]);

-- name: demo_product_upsert
-- Create the demo's products, or keep the ones a previous run left (--keep).
-- DO UPDATE (a no-op change) rather than DO NOTHING so RETURNING gives every id.
INSERT INTO pricing_product (sku, name, url)
SELECT p.sku, p.name, p.url
FROM unnest(%(skus)s::text[], %(names)s::text[], %(urls)s::text[]) AS p(sku, name, url)
ON CONFLICT (sku) DO UPDATE SET name = pricing_product.name
RETURNING id, sku;

-- name: demo_event_watermark
-- The largest event id now: this run's events all come after it.
SELECT coalesce(max(id), 0) FROM outbox_event;

-- name: demo_crawl_insert
-- One chunk of the crawl in one statement, as a crawler writing a page of results
-- would. The outbox trigger runs once for the statement and writes one event per
-- row from its transition table.
INSERT INTO pricing_crawlresult (id, product_id, source, price, currency, confidence, crawled_at)
SELECT r.id, r.product_id, r.source, r.price, r.currency, r.confidence, r.crawled_at
FROM unnest(
    %(ids)s::uuid[], %(product_ids)s::bigint[], %(sources)s::text[], %(prices)s::numeric[],
    %(currencies)s::text[], %(confidences)s::float8[], %(crawled_ats)s::timestamptz[]
) AS r(id, product_id, source, price, currency, confidence, crawled_at);

-- name: demo_crawl_delete
-- The results the demo deletes right after writing them (same transaction). Their
-- events stay: the trigger wrote them at INSERT and a DELETE does not take them
-- back, so the handler later finds no row and fails them with a readable error.
DELETE FROM pricing_crawlresult
WHERE id = ANY(%(ids)s::uuid[]);

-- name: demo_run_progress
-- This run's events by state, for the progress bar. "retrying": pending events
-- whose handler has failed at least once (an ack_retry left its last_error).
SELECT count(*) FILTER (WHERE status = 'done') AS done,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'pending' AND last_error <> '') AS retrying,
       count(*) AS written
FROM outbox_event
WHERE id > %(after)s
  AND topic = %(topic)s
  AND payload ->> 'product_id' = ANY(%(product_ids)s::text[]);

-- name: demo_run_outcomes
-- What the handler decided for this run's results (status, reason), read from
-- the results themselves. Deleted results have no row, hence no outcome here.
SELECT coalesce(cr.history_record_status, '(none)') AS status,
       coalesce(nullif(cr.history_record_reason, ''), '-') AS reason,
       count(*) AS results
FROM outbox_event AS e
JOIN pricing_crawlresult AS cr ON cr.id::text = e.key
WHERE e.id > %(after)s
  AND e.topic = %(topic)s
  AND e.payload ->> 'product_id' = ANY(%(product_ids)s::text[])
GROUP BY 1, 2
ORDER BY 3 DESC, 1, 2;

-- name: demo_run_failed
-- This run's failed events with their error, first few.
SELECT id, key, attempts, last_error
FROM outbox_event
WHERE id > %(after)s
  AND topic = %(topic)s
  AND payload ->> 'product_id' = ANY(%(product_ids)s::text[])
  AND status = 'failed'
ORDER BY id
LIMIT %(limit)s;

-- name: demo_run_timing
-- Throughput and commit-to-record latency of this run's done events. Both
-- created_at (set by the crawl's INSERT) and processed_at (set by the drainer's
-- ack, in the transaction that wrote the history row) are now() of their
-- transactions, so the difference is the time from the crawl transaction to the
-- recording transaction, backlog wait included.
SELECT count(*) AS done,
       min(created_at) AS first_created,
       max(processed_at) AS last_processed,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM processed_at - created_at)
       ) AS latency,
       max(extract(epoch FROM processed_at - created_at)) AS latency_max
FROM outbox_event
WHERE id > %(after)s
  AND topic = %(topic)s
  AND payload ->> 'product_id' = ANY(%(product_ids)s::text[])
  AND status = 'done';

-- name: demo_run_by_drainer
-- How the done events were shared between drainers (an ack keeps locked_by).
SELECT coalesce(locked_by, '?') AS drainer, count(*) AS events
FROM outbox_event
WHERE id > %(after)s
  AND topic = %(topic)s
  AND payload ->> 'product_id' = ANY(%(product_ids)s::text[])
  AND status = 'done'
GROUP BY 1
ORDER BY 1;

-- name: demo_stats_view_exists
-- Whether the outbox_stats monitoring view has been migrated in.
SELECT to_regclass('outbox_stats') IS NOT NULL;

-- name: demo_stats_view
SELECT * FROM outbox_stats;

-- name: demo_counts_by_status
-- The fallback when there is no outbox_stats view: the whole outbox by topic and status.
SELECT topic, status, count(*) AS events
FROM outbox_event
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: demo_checkpoint
-- After a demo on the embedded server: a checkpoint lets it remove the WAL the run
-- wrote (within max_wal_size, project/database.py) instead of keeping it until the
-- next timed checkpoint. Superuser (or pg_checkpoint) only: never on DATABASE_URL.
CHECKPOINT;
