-- The outbox's monitoring views, created by migration 0002_operations (which reads
-- this file), so they exist wherever the schema does. Query them from any client:
--
--     SELECT * FROM outbox_stats;
--     SELECT * FROM outbox_failures LIMIT 20;
--     SELECT * FROM outbox_throughput;
--
-- Each must stay cheap on a table of tens of millions of rows: every part below is
-- served by one of outbox_event's partial indexes or by the catalog, never by a scan
-- of the done rows of a large table. The file can be run again (psql -f): it
-- replaces what it creates. docs/monitoring.sql grants them to a
-- read-only role; docs/operations.md shows what they cost on 1,000,000 rows.
-- Migration 0005 makes outbox_stats_by_topic() SECURITY DEFINER (outbox/sql/monitoring.sql):
-- CREATE OR REPLACE FUNCTION resets that, so whatever runs this file again must run
-- that one after it.
-- 'outbox_event'::regclass is resolved once, when the view is created: the views
-- follow the table, whatever the search_path of the session that reads them.

CREATE OR REPLACE FUNCTION outbox_stats_topic_shares()
RETURNS TABLE (topic text, share double precision)
LANGUAGE sql
STABLE
-- The topic column's most common values and their frequencies, from ANALYZE (what the
-- planner uses for WHERE topic = ...): how the done estimate is split between topics.
AS $$
    SELECT s.topic, s.share::double precision
    FROM pg_stats AS st
    CROSS JOIN LATERAL unnest(st.most_common_vals::text::text[], st.most_common_freqs) AS s(topic, share)
    WHERE st.schemaname = (
              SELECT n.nspname
              FROM pg_class AS c
              JOIN pg_namespace AS n ON n.oid = c.relnamespace
              WHERE c.oid = 'outbox_event'::regclass
          )
      AND st.tablename = 'outbox_event'
      AND st.attname = 'topic'
$$;

COMMENT ON FUNCTION outbox_stats_topic_shares() IS 'Share of outbox_event rows per topic, from the column statistics.';

CREATE OR REPLACE FUNCTION outbox_stats_by_topic()
RETURNS TABLE (
    topic text,
    status text,
    events bigint,
    leased bigint,
    oldest_created_at timestamptz,
    oldest_age_seconds double precision,
    max_attempts_seen integer,
    estimated boolean,
    oldest_available_at timestamptz,
    lag_seconds double precision
)
LANGUAGE plpgsql
STABLE
-- The statement planned for a large table is cheap, but a single query holding both
-- ways (exact and estimated) would carry the planned cost of counting every done row
-- even though that part never runs, and past jit_above_cost PostgreSQL would spend
-- ~1.5 s compiling it on every call (measured on 10,000,000 rows). So the choice is
-- made here, before planning, and JIT is off: these are small aggregates.
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    heap_pages bigint;
    estimated_rows double precision;
    topic_shares double precision;
    -- Up to this many pages (8192: 64 MB with 8 kB pages, where a count takes
    -- milliseconds), done events are counted exactly; the setting changes it, e.g.
    -- ALTER DATABASE db SET outbox.stats_exact_max_pages = 0 to always estimate.
    exact_max_pages bigint := coalesce(nullif(current_setting('outbox.stats_exact_max_pages', true), '')::bigint, 8192);
    -- ...and up to this many rows whatever the pages (a bloated table of few rows is
    -- still cheap to count): outbox.stats_exact_max_rows, default 200,000.
    exact_max_rows bigint := coalesce(nullif(current_setting('outbox.stats_exact_max_rows', true), '')::bigint, 200000);
BEGIN
    -- The table's size now (exact, from the file size) and the planner's own estimate
    -- of its live rows: reltuples, as of the last VACUUM or ANALYZE, scaled to the
    -- current number of pages the way the planner scales it. reltuples is -1 until
    -- the table is first vacuumed or analyzed: no estimate then.
    SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint,
           CASE
               WHEN c.reltuples < 0 THEN NULL
               WHEN c.relpages > 0
                   THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::bigint)
               ELSE c.reltuples
           END
      INTO heap_pages, estimated_rows
      FROM pg_class AS c
     WHERE c.oid = 'outbox_event'::regclass;
    SELECT sum(ts.share) INTO topic_shares FROM outbox_stats_topic_shares() AS ts;

    -- Exact when that is cheap: a small table, or few rows. Exact too, however large,
    -- while there is nothing to estimate from (never analyzed, no topic statistics):
    -- a slow answer once in a while rather than a row without a topic or a count.
    IF heap_pages <= exact_max_pages OR estimated_rows IS NULL OR estimated_rows <= exact_max_rows
       OR coalesce(topic_shares, 0) <= 0 THEN
        RETURN QUERY
        SELECT e.topic, e.status, count(*),
               count(*) FILTER (WHERE e.status = 'pending' AND e.locked_by IS NOT NULL AND e.locked_until > now()),
               min(e.created_at),
               extract(epoch FROM now() - min(e.created_at))::double precision,
               max(e.attempts),
               false,
               min(e.available_at) FILTER (WHERE e.status = 'pending' AND e.available_at <= now()),
               extract(epoch FROM now() - min(e.available_at) FILTER (
                   WHERE e.status = 'pending' AND e.available_at <= now()))::double precision
        FROM outbox_event AS e
        GROUP BY e.topic, e.status
        ORDER BY e.topic, e.status;
        RETURN;
    END IF;

    -- A large table. Pending and failed events are counted exactly: each half repeats
    -- the predicate of a partial index (outbox_event_claim_idx, outbox_event_failed_idx),
    -- so it reads only those rows, however many done rows there are. Done events are
    -- estimated: the table's estimated rows minus the exact pending and failed counts,
    -- split between the topics of the column's statistics in proportion to their
    -- shares (rare topics below the statistics' horizon are counted with the common
    -- ones: the per-topic figures are estimates, their sum is the table's).
    RETURN QUERY
    WITH live AS (
        SELECT e.topic, e.status, count(*) AS events,
               count(*) FILTER (WHERE e.locked_by IS NOT NULL AND e.locked_until > now()) AS leased,
               min(e.created_at) AS oldest_created_at, max(e.attempts) AS max_attempts_seen,
               min(e.available_at) FILTER (WHERE e.available_at <= now()) AS oldest_available_at
        FROM outbox_event AS e
        WHERE e.status = 'pending'
        GROUP BY e.topic, e.status
        UNION ALL
        SELECT e.topic, e.status, count(*), 0, min(e.created_at), max(e.attempts), NULL
        FROM outbox_event AS e
        WHERE e.status = 'failed'
        GROUP BY e.topic, e.status
    ),
    done_total AS (
        SELECT greatest(estimated_rows - (SELECT coalesce(sum(l.events), 0) FROM live AS l), 0) AS events
    ),
    done_estimated AS (
        SELECT ts.topic, round(dt.events * ts.share / topic_shares)::bigint AS events
        FROM done_total AS dt
        CROSS JOIN outbox_stats_topic_shares() AS ts
        WHERE round(dt.events * ts.share / topic_shares) > 0
    )
    SELECT l.topic, l.status, l.events, l.leased, l.oldest_created_at,
           extract(epoch FROM now() - l.oldest_created_at)::double precision,
           l.max_attempts_seen, false, l.oldest_available_at,
           extract(epoch FROM now() - l.oldest_available_at)::double precision
    FROM live AS l
    UNION ALL
    SELECT d.topic, 'done', d.events, 0::bigint, NULL::timestamptz, NULL::double precision, NULL::integer, true,
           NULL::timestamptz, NULL::double precision
    FROM done_estimated AS d
    ORDER BY 1, 2;
END;
$$;

COMMENT ON FUNCTION outbox_stats_by_topic() IS 'The rows of the outbox_stats view (see the view''s comment).';

CREATE OR REPLACE VIEW outbox_stats AS
SELECT topic, status, events, leased, oldest_created_at, oldest_age_seconds, max_attempts_seen, estimated,
       oldest_available_at, lag_seconds
FROM outbox_stats_by_topic();

-- Its predecessor (before lag_seconds), replaced above: CREATE OR REPLACE VIEW keeps the
-- view's grants, and a function's result columns cannot change in place.
DROP FUNCTION IF EXISTS outbox_stats_rows();

COMMENT ON VIEW outbox_stats IS
'One row per topic and status: events, leased (pending under a live lease), oldest_created_at, '
'oldest_age_seconds (creation age), max_attempts_seen, estimated, and for pending rows '
'oldest_available_at and lag_seconds: how long the oldest event claimable now (available_at <= now(): '
'not leased, not waiting out a backoff) has been claimable; the lag a drainer could remove. '
'Counts are exact while outbox_event is small (at most 64 MB, setting outbox.stats_exact_max_pages, '
'or at most 200,000 rows, outbox.stats_exact_max_rows); above that, pending and failed rows stay exact '
'(partial indexes) and done rows are estimated (estimated = true) from pg_class.reltuples and the '
'topic column''s statistics, with no oldest/attempts, so the view never scans the done rows of a '
'large table. Every row has a topic and a count.';

CREATE OR REPLACE VIEW outbox_failures AS
-- Newest first, served by the partial index outbox_event_failed_idx (id WHERE failed).
SELECT id, topic, key, attempts, last_error, created_at, processed_at AS failed_at
FROM outbox_event
WHERE status = 'failed'
ORDER BY id DESC;

COMMENT ON VIEW outbox_failures IS
'Failed events, newest first: id, topic, key, attempts, last_error, created_at, failed_at. '
'Read with a LIMIT; retry with manage.py outbox_retry.';

CREATE OR REPLACE FUNCTION outbox_throughput_rows(span interval, step interval)
RETURNS TABLE (start timestamptz, done bigint, failed bigint, wait_seconds double precision)
LANGUAGE sql
STABLE
SET jit = off
AS $$
    -- One row per step over the last span (zeros included), oldest first, the last one
    -- being the step now under way. Done rows come from outbox_event_done_idx
    -- (processed_at WHERE done): counted from the index alone, only the span's entries;
    -- failed ones from outbox_event_failed_idx. wait_seconds: processed_at - created_at
    -- of the last event done in the step, one index probe and one row each however many
    -- were done (a sample of the lag; NULL: none done).
    WITH slots AS (
        SELECT s.start
        FROM generate_series(date_bin(step, now(), timestamptz 'epoch') - span + step,
                             date_bin(step, now(), timestamptz 'epoch'), step) AS s(start)
    ),
    done AS (
        SELECT date_bin(step, e.processed_at, timestamptz 'epoch') AS start, count(*) AS events
        FROM outbox_event AS e
        WHERE e.status = 'done'
          AND e.processed_at >= (SELECT min(start) FROM slots)
        GROUP BY 1
    ),
    failed AS (
        SELECT date_bin(step, e.processed_at, timestamptz 'epoch') AS start, count(*) AS events
        FROM outbox_event AS e
        WHERE e.status = 'failed'
          AND e.processed_at >= (SELECT min(start) FROM slots)
        GROUP BY 1
    )
    SELECT s.start, coalesce(d.events, 0), coalesce(f.events, 0), w.wait_seconds
    FROM slots AS s
    LEFT JOIN done AS d ON d.start = s.start
    LEFT JOIN failed AS f ON f.start = s.start
    LEFT JOIN LATERAL (
        SELECT extract(epoch FROM e.processed_at - e.created_at)::double precision AS wait_seconds
        FROM outbox_event AS e
        WHERE e.status = 'done'
          AND e.processed_at >= s.start
          AND e.processed_at < s.start + step
        ORDER BY e.processed_at DESC
        LIMIT 1
    ) AS w ON true
    ORDER BY s.start
$$;

COMMENT ON FUNCTION outbox_throughput_rows(interval, interval) IS
'The rows of outbox_throughput and outbox_throughput_day (see their comments).';

CREATE OR REPLACE VIEW outbox_throughput AS
SELECT start AS minute, done, failed, wait_seconds
FROM outbox_throughput_rows(interval '1 hour', interval '1 minute');

COMMENT ON VIEW outbox_throughput IS
'Events done and failed per minute over the last hour (60 rows, oldest first, zeros included), and '
'wait_seconds: how long the last event done in that minute had waited since it was written '
'(processed_at - created_at; NULL: none done).';

CREATE OR REPLACE VIEW outbox_throughput_day AS
SELECT start AS period_start, done, failed, wait_seconds
FROM outbox_throughput_rows(interval '24 hours', interval '15 minutes');

COMMENT ON VIEW outbox_throughput_day IS
'Like outbox_throughput over the last 24 hours, per 15 minutes (96 rows). Counts the day''s done '
'events from outbox_event_done_idx: its cost grows with them (bench/metrics_bench.py).';
