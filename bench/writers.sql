-- The writers bench (bench/writers.py): its statements, and the trigger variants it
-- measures side by side with the migrated trigger. Bench database only.


-- name: product_seed
-- The products the pgbench writers spread their results over.
INSERT INTO pricing_product (sku, name)
SELECT 'writers-' || g, 'Writers product ' || g
FROM generate_series(1, %(products)s) AS g;

-- name: product_first_id
SELECT min(id) FROM pricing_product;

-- name: tables_reset
-- Each run starts from empty tables, so no run pays for the previous one's rows.
TRUNCATE pricing_pricehistory, pricing_crawlresult, outbox_event, outbox_task_result RESTART IDENTITY;

-- name: server_version
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       current_setting('synchronous_commit'), current_setting('fsync');

-- name: walinspect_create
-- WAL records by relation and transaction: per-index entries, and this database's
-- share of a server that other sessions write to as well.
CREATE EXTENSION IF NOT EXISTS pg_walinspect;

-- name: wal_lsn
-- Where a step's records begin (the insert position)...
SELECT pg_current_wal_insert_lsn();

-- name: wal_flushed_to
-- ...and whether the WAL up to there is flushed (pg_walinspect reads flushed WAL only).
SELECT pg_current_wal_flush_lsn() >= %(lsn)s::pg_lsn;

-- name: wal_records
-- The WAL records between two positions (only this database's are kept, by the
-- caller, from their block references and transaction ids).
SELECT xid::text::bigint, resource_manager, record_type, record_length, fpi_length, coalesce(block_ref, '')
FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn);

-- name: relation_filenodes
-- The files of this database's outbox and pricing relations, to name WAL block references.
SELECT c.relfilenode, c.relname
FROM pg_class AS c
WHERE c.relname LIKE 'outbox_event%%' OR c.relname LIKE 'pricing_crawlresult%%' OR c.relname LIKE 'pricing_cr_%%';

-- name: database_oid
SELECT oid FROM pg_database WHERE datname = current_database();

-- name: event_fillfactor_migrated
-- The fill factor the migrations gave outbox_event (the WAL case compares it with 100).
SELECT coalesce((SELECT split_part(o, '=', 2) FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%%'), '100')
FROM pg_class AS c WHERE c.relname = 'outbox_event';

-- name: event_table_bytes
-- The heap and the indexes of outbox_event after the case (what the fill factor costs in space).
SELECT pg_relation_size('outbox_event'), pg_indexes_size('outbox_event');

-- name: crawl_result_insert_one
-- The crawler's write: one result, one transaction.
INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence)
VALUES (%(product_id)s, 'html_ml', 19.99, 'EUR', 0.95);

-- name: event_fillfactor_set
-- The WAL case at a given fill factor (bench database only; new pages only).
-- (the value is composed in as a literal: DDL takes no parameters)
ALTER TABLE outbox_event SET (fillfactor = {fillfactor});

-- name: committed_create
-- The latency case's writers note when their COMMIT returned, in a transaction of
-- their own after it: unlogged, so that note costs no WAL flush.
CREATE UNLOGGED TABLE bench_committed (key text NOT NULL, at timestamptz NOT NULL);

-- name: committed_reset
TRUNCATE bench_committed;

-- name: event_wait_stats
-- How long events waited, from their writer's COMMIT to the start of the drainer
-- transaction that handled them (processed_at is that transaction's now()), in ms.
SELECT count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY w),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY w),
       max(w),
       count(*) FILTER (WHERE w > %(bound)s)
FROM (SELECT extract(epoch FROM e.processed_at - c.at)::float8 * 1000 AS w
      FROM outbox_event AS e JOIN bench_committed AS c ON c.key = e.key
      WHERE e.status = 'done') AS s;

-- name: event_count_not_done
SELECT count(*) FROM outbox_event WHERE status <> 'done';

-- name: trigger_disable_all
ALTER TABLE pricing_crawlresult DISABLE TRIGGER USER;

-- name: checkpoint
-- Full-page images after a checkpoint would otherwise land in whichever run comes first.
CHECKPOINT;

-- ----- trigger variants (functions and triggers on pricing_crawlresult, created disabled)

-- name: variant_stmt_each
-- The trigger as issue 15 found it: a statement trigger over a transition table, and a
-- NOTIFY from every statement that inserted (so every writer's COMMIT queues on
-- NOTIFY's server-wide lock).
CREATE FUNCTION bench_w_stmt_each() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE inserted bigint;
BEGIN
    INSERT INTO outbox_event (topic, key, bucket, payload)
    SELECT 'pricing.crawl_result.created', n.id::text, (hashtextextended((n.product_id)::text, 0) & 255)::smallint,
           jsonb_build_object('product_id', n.product_id, 'source', n.source, 'price', n.price,
                              'currency', n.currency, 'confidence', n.confidence, 'crawled_at', n.crawled_at)
    FROM bench_new_rows AS n;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted > 0 AND coalesce(current_setting('outbox.notify', true), 'on') <> 'off' THEN
        PERFORM pg_notify('outbox', 'pricing.crawl_result.created');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_w_stmt_each AFTER INSERT ON pricing_crawlresult
    REFERENCING NEW TABLE AS bench_new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_w_stmt_each();
ALTER TABLE pricing_crawlresult DISABLE TRIGGER bench_w_stmt_each;

-- name: variant_stmt_gated
-- The statement trigger with the NOTIFY gated by one fixed key (no windows): only
-- the transaction that wins the lock sends one.
CREATE FUNCTION bench_w_stmt_gated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE inserted bigint;
BEGIN
    INSERT INTO outbox_event (topic, key, bucket, payload)
    SELECT 'pricing.crawl_result.created', n.id::text, (hashtextextended((n.product_id)::text, 0) & 255)::smallint,
           jsonb_build_object('product_id', n.product_id, 'source', n.source, 'price', n.price,
                              'currency', n.currency, 'confidence', n.confidence, 'crawled_at', n.crawled_at)
    FROM bench_new_rows AS n;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted > 0 AND coalesce(current_setting('outbox.notify', true), 'on') <> 'off'
       AND pg_try_advisory_xact_lock(1869968482, 1) THEN
        PERFORM pg_notify('outbox', 'pricing.crawl_result.created');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_w_stmt_gated AFTER INSERT ON pricing_crawlresult
    REFERENCING NEW TABLE AS bench_new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_w_stmt_gated();
ALTER TABLE pricing_crawlresult DISABLE TRIGGER bench_w_stmt_gated;

-- name: variant_row_gated
-- A row trigger (no transition table): one INSERT ... VALUES per row, the NOTIFY
-- gated as the migrated trigger's (100 ms windows).
CREATE FUNCTION bench_w_row_gated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_event (topic, key, bucket, payload)
    VALUES ('pricing.crawl_result.created', NEW.id::text, (hashtextextended((NEW.product_id)::text, 0) & 255)::smallint,
            jsonb_build_object('product_id', NEW.product_id, 'source', NEW.source, 'price', NEW.price,
                               'currency', NEW.currency, 'confidence', NEW.confidence, 'crawled_at', NEW.crawled_at));
    IF coalesce(current_setting('outbox.notify', true), 'on') <> 'off'
       AND pg_try_advisory_xact_lock(1869968482,
                                     (floor(date_part('epoch', clock_timestamp()) * 10)::bigint % 2147483647)::int) THEN
        PERFORM pg_notify('outbox', 'pricing.crawl_result.created');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_w_row_gated AFTER INSERT ON pricing_crawlresult
    FOR EACH ROW EXECUTE FUNCTION bench_w_row_gated();
ALTER TABLE pricing_crawlresult DISABLE TRIGGER bench_w_row_gated;
