-- The statements of bench/metrics_bench.py: a large outbox to scrape.

-- name: large_done_seed
-- Done events %(first)s..%(last)s of %(total)s, processed evenly over the last
-- %(days)s days (oldest first, so ids follow processed_at as in a drained table),
-- each done a few seconds after it was written; %(other_share)s of them belong to
-- a second topic, 2% keep the error of a retry.
INSERT INTO outbox_event (topic, key, payload, status, attempts, last_error, processed_at, created_at, available_at)
SELECT CASE WHEN g %% 1000 < %(other_share)s * 1000 THEN 'stock.level.counted' ELSE 'pricing.crawl_result.created' END,
       gen_random_uuid()::text,
       jsonb_build_object('product_id', g %% 10000, 'source', 'html_ml', 'price', 12.34,
                          'currency', 'EUR', 'confidence', 0.95),
       'done',
       CASE WHEN g %% 50 = 0 THEN 2 ELSE 1 END,
       CASE WHEN g %% 50 = 0 THEN 'builtins.TimeoutError: the first attempt timed out' ELSE '' END,
       t.processed_at, t.processed_at - interval '2 seconds', t.processed_at
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT now() - make_interval(secs => (%(total)s - g)::float8 / %(total)s * %(days)s * 86400)
                  AS processed_at) AS t;

-- name: large_live_seed
-- The live part of the outbox: %(pending)s pending events (written over the last
-- minute) and %(failed)s failed ones.
INSERT INTO outbox_event (topic, key, payload, status, attempts, last_error, processed_at, created_at, available_at)
SELECT 'pricing.crawl_result.created', gen_random_uuid()::text, '{}'::jsonb,
       CASE WHEN g <= %(pending)s THEN 'pending' ELSE 'failed' END,
       CASE WHEN g <= %(pending)s THEN 0 ELSE 3 END,
       CASE WHEN g <= %(pending)s THEN '' ELSE 'builtins.LookupError: CrawlResult does not exist' END,
       CASE WHEN g <= %(pending)s THEN NULL ELSE now() END,
       now() - make_interval(secs => 60 - g::float8 / (%(pending)s + %(failed)s) * 60),
       now() - make_interval(secs => 60 - g::float8 / (%(pending)s + %(failed)s) * 60)
FROM generate_series(1, %(pending)s + %(failed)s) AS g;

-- name: large_event_count
-- How many events the bench table holds (once, to reuse a filled table).
SELECT count(*) FROM outbox_event;

-- name: large_table_size
SELECT pg_relation_size('outbox_event'::regclass), pg_total_relation_size('outbox_event'::regclass);

-- name: large_vacuum_analyze
-- As autovacuum leaves a table after a load: statistics and the visibility map.
VACUUM (ANALYZE) outbox_event;
