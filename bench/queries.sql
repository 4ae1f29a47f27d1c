-- Every SQL statement of the benchmark suite, in one file (loaded by outbox.sql.Queries).
-- These run only against the benchmark's own database, never a product database.


-- name: server_settings
-- What the server runs with: recorded next to every result.
SELECT name, setting, coalesce(unit, '')
FROM pg_settings
WHERE name IN ('server_version', 'shared_buffers', 'synchronous_commit', 'fsync', 'wal_level',
               'autovacuum', 'max_connections', 'work_mem', 'checkpoint_timeout', 'max_wal_size')
ORDER BY name;

-- name: product_seed
INSERT INTO pricing_product (sku, name)
SELECT 'bench-' || g, 'Bench product ' || g
FROM generate_series(1, %(products)s) AS g;

-- name: product_first_id
SELECT min(id), count(*) FROM pricing_product;

-- name: crawl_result_seed
-- %(n)s crawl results in one INSERT (the outbox trigger writes their events in the
-- same statement). Products are scattered (7919 is prime to the product count), so
-- consecutive events, and so concurrent batches, hit different products. About 10%%
-- come from a source that is not allowed and about 14%% have a low confidence;
-- prices move, so most eligible results are recorded.
INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence, crawled_at)
SELECT %(first_product)s + ((%(offset)s + g) * 7919) %% %(products)s,
       CASE WHEN g %% 10 = 0 THEN 'html_rules' ELSE 'html_ml' END,
       (1000 + ((%(offset)s + g) * 104729) %% 50000) / 100.0,
       'EUR',
       CASE WHEN g %% 7 = 0 THEN 0.5 ELSE 0.95 END,
       timestamptz '2025-01-01 00:00:00+00' + make_interval(secs => %(offset)s + g)
FROM generate_series(1::bigint, %(n)s::bigint) AS g;

-- name: crawl_result_insert_one
-- One result, as a crawler writes it (the latency and trigger-cost writers).
INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence, crawled_at)
VALUES (%(product_id)s, 'html_ml', %(price)s, 'EUR', 0.95, clock_timestamp())
RETURNING id;

-- name: tables_reset
-- A fresh start for one repetition: no results, no history, no events.
TRUNCATE pricing_pricehistory, pricing_crawlresult, outbox_event, outbox_task_result RESTART IDENTITY;

-- name: event_pending_exists
SELECT EXISTS (SELECT 1 FROM outbox_event WHERE status = 'pending');

-- name: event_first_pending_id
-- The memory case's progress, read from the claim index (topic, id).
SELECT coalesce((SELECT id FROM outbox_event WHERE status = 'pending' AND topic = 'pricing.crawl_result.created'
                  ORDER BY id LIMIT 1), 0);

-- name: event_count_by_status
SELECT status, count(*) FROM outbox_event GROUP BY status ORDER BY status;

-- name: crawl_result_count_unprocessed
SELECT count(*) FROM pricing_crawlresult WHERE history_record_status IS NULL;

-- name: event_done_seed
-- %(n)s done events, as a drained table keeps them until the retention purge.
INSERT INTO outbox_event (topic, key, payload, status, attempts, processed_at, created_at, available_at)
SELECT 'pricing.crawl_result.created', gen_random_uuid()::text,
       jsonb_build_object('product_id', g %% 10000, 'source', 'html_ml', 'price', 12.34,
                          'currency', 'EUR', 'confidence', 0.95, 'crawled_at', now()),
       'done', 1, now(), now(), now()
FROM generate_series(1::bigint, %(n)s::bigint) AS g;

-- name: ceiling_drain_batch
-- The plain-SQL ceiling: claim a batch with SKIP LOCKED, insert the history of its
-- eligible results and mark the events done, in one statement and one transaction.
-- No per-product lock, no stale/unchanged check, no result status: the least work
-- that still moves an event into history. It claims from the same index as
-- event_claim_batch, (topic, id).
WITH claimed AS (
    SELECT id, key
    FROM outbox_event
    WHERE status = 'pending' AND topic = 'pricing.crawl_result.created' AND (available_at <= now()) IS TRUE
    ORDER BY id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), history AS (
    INSERT INTO pricing_pricehistory (product_id, price, currency, source, crawled_at, recorded_at, crawl_result_id)
    SELECT cr.product_id, cr.price, cr.currency, cr.source, cr.crawled_at, now(), cr.id
    FROM claimed
    JOIN pricing_crawlresult AS cr ON cr.id = claimed.key::uuid
    WHERE cr.source = 'html_ml' AND cr.confidence >= 0.85 AND cr.price > 0
    ON CONFLICT (crawl_result_id) DO NOTHING
)
UPDATE outbox_event AS e
SET status = 'done', processed_at = now()
FROM claimed
WHERE e.id = claimed.id;

-- name: drainers_listening
-- Drainer processes that are idle on LISTEN (their identity is the application_name).
SELECT count(*)
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name LIKE 'outbox:%%'
  AND state = 'idle'
  AND query LIKE 'LISTEN%%';

-- name: drainers_connected
SELECT count(DISTINCT application_name)
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name LIKE 'outbox:%%';

-- name: crawl_result_user_triggers
SELECT tgname FROM pg_trigger WHERE tgrelid = 'pricing_crawlresult'::regclass AND NOT tgisinternal;

-- name: trigger_function_source
SELECT p.oid::regprocedure::text, p.prosrc
FROM pg_trigger AS t
JOIN pg_proc AS p ON p.oid = t.tgfoid
WHERE t.tgrelid = 'pricing_crawlresult'::regclass AND t.tgname = %(name)s;

-- name: history_probe_create
-- Latency probe (bench database only): every history row notifies its result id at
-- the commit of the drainer's transaction, which is when the row becomes visible.
CREATE OR REPLACE FUNCTION bench_history_probe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_history', NEW.crawl_result_id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_history_probe AFTER INSERT ON pricing_pricehistory
FOR EACH ROW EXECUTE FUNCTION bench_history_probe();

-- name: history_probe_drop
DROP TRIGGER IF EXISTS bench_history_probe ON pricing_pricehistory;
DROP FUNCTION IF EXISTS bench_history_probe();

-- name: pin_snapshot
-- Taken inside a REPEATABLE READ transaction: its snapshot (and so the server's
-- xmin horizon) is held until the transaction ends.
SELECT count(*) FROM pricing_product;

-- name: outbox_event_size
SELECT pg_total_relation_size('outbox_event'), pg_relation_size('outbox_event_claim_idx');

-- name: crawl_result_ids_in_order
-- The ids the old design's post_save signal would have pushed, in insert order.
SELECT id::text FROM pricing_crawlresult ORDER BY crawled_at;

-- name: tables_analyze
ANALYZE pricing_product, pricing_crawlresult, pricing_pricehistory, outbox_event;

-- name: outbox_vacuum
-- What autovacuum would do to the outbox table with aggressive per-table settings.
VACUUM outbox_event;

-- name: ignore_check_create
-- The shape of pgtrigger's per-call ignore check (a setting read inside an
-- EXCEPTION block, so a subtransaction per call), for the trigger-cost variant
-- that puts it back (bench.db.with_ignore_check). Bench database only.
CREATE OR REPLACE FUNCTION bench_should_ignore(trigger_name name) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    ignored text[];
BEGIN
    BEGIN
        SELECT INTO ignored current_setting('pgtrigger.ignore');
    EXCEPTION WHEN OTHERS THEN
    END;
    RETURN ignored IS NOT NULL AND trigger_name = ANY(ignored);
END;
$$;

-- name: bucket_own_all
-- The claim-scale case claims as one drainer that owns every bucket of the topic.
UPDATE outbox_bucket SET owner = %(me)s, owned_since = now() WHERE topic = %(topic)s;

-- name: trivial_effect_create
-- The trivial topic's effect table: one row per handled event.
CREATE TABLE IF NOT EXISTS bench_trivial_effect (event_id bigint NOT NULL);

-- name: trivial_effect_reset
TRUNCATE bench_trivial_effect;

-- name: trivial_effect_count
-- Effects and distinct events that have one (equal: no event handled twice).
SELECT count(*), count(DISTINCT event_id) FROM bench_trivial_effect;

-- name: trivial_notify
-- What the trigger would send for these events: idle drainers wake at commit.
SELECT pg_notify('outbox', 'bench.trivial');

-- name: trivial_effect_insert
-- The trivial handler's only statement: one row per event of the batch.
INSERT INTO bench_trivial_effect (event_id) SELECT unnest(%(ids)s::bigint[]);

-- name: trivial_event_seed
-- %(n)s events of the trivial topic (no order key: no bucket).
INSERT INTO outbox_event (topic, key, payload)
SELECT 'bench.trivial', g::text, '{}'::jsonb FROM generate_series(1, %(n)s) AS g;

-- name: trivial_drain_batch
-- The plain-SQL version of the trivial topic's work, the ceiling it is compared with:
-- claim a batch with SKIP LOCKED, insert one row per event, mark them done, in one
-- statement and one transaction, from the same index as event_claim_batch.
WITH claimed AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'pending' AND topic = 'bench.trivial' AND (available_at <= now()) IS TRUE
    ORDER BY id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), effect AS (
    INSERT INTO bench_trivial_effect (event_id) SELECT id FROM claimed
)
UPDATE outbox_event AS e
SET status = 'done', processed_at = now()
FROM claimed
WHERE e.id = claimed.id;

-- ----- bench/tasks_bench.py: outbox.tasks against django-tasks-db

-- name: task_bench_table
-- The row each trivial task inserts (its database effect, counted afterwards).
CREATE TABLE IF NOT EXISTS bench_task_row (id bigserial PRIMARY KEY, n bigint NOT NULL);

-- name: task_bench_reset
-- Between two measures: no task, result or effect left of the previous one.
TRUNCATE outbox_event, outbox_task_result, django_tasks_database_dbtaskresult, bench_task_row;

-- name: task_bench_outbox_counts
-- outbox.tasks: tasks finished (done or failed), and effect rows written.
SELECT (SELECT count(*) FROM outbox_event WHERE topic LIKE 'tasks.%%' AND status <> 'pending'),
       (SELECT count(*) FROM bench_task_row);

-- name: task_bench_db_counts
-- django-tasks-db: tasks finished (SUCCESSFUL or FAILED), and effect rows written.
SELECT (SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status IN ('SUCCESSFUL', 'FAILED')),
       (SELECT count(*) FROM bench_task_row);

-- name: task_bench_outbox_state
-- The crash comparison: the outbox task's status as get_result() derives it.
SELECT CASE status WHEN 'done' THEN 'SUCCESSFUL' WHEN 'failed' THEN 'FAILED'
                   ELSE CASE WHEN locked_until > now() THEN 'RUNNING' ELSE 'READY' END END
FROM outbox_event WHERE topic LIKE 'tasks.%%' ORDER BY id DESC LIMIT 1;

-- name: task_bench_db_state
-- The crash comparison: the django-tasks-db task's status column.
SELECT status FROM django_tasks_database_dbtaskresult ORDER BY enqueued_at DESC LIMIT 1;
