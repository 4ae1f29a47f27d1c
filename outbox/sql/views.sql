-- The outbox's monitoring views, created by migration 0002_operations (which reads
-- this file), so they exist wherever the schema does. Query them from any client:
--
--     SELECT * FROM outbox_stats;
--     SELECT * FROM outbox_failures LIMIT 20;
--     SELECT * FROM outbox_throughput;
--
-- Each must stay cheap on a table of tens of millions of rows: every part below is
-- served by one of outbox_event's partial indexes or by the catalog, never by a scan
-- of the done rows of a large table. docs/monitoring.sql grants them to a
-- read-only role; docs/operations.md shows what they cost on 1,000,000 rows.
-- 'outbox_event'::regclass is resolved once, when the view is created: the views
-- follow the table, whatever the search_path of the session that reads them.

CREATE OR REPLACE VIEW outbox_stats AS
WITH heap AS (
    -- The table's size now (exact, from the file size) and the planner's own estimate
    -- of its live rows: reltuples, as of the last VACUUM or ANALYZE, scaled to the
    -- current number of pages the way the planner scales it. reltuples is -1 until
    -- the table is first vacuumed or analyzed: no estimate then.
    SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint AS pages,
           CASE
               WHEN c.reltuples < 0 THEN NULL
               WHEN c.relpages > 0
                   THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::bigint)
               ELSE c.reltuples
           END AS estimated_rows,
           -- Up to this many pages, done events are counted exactly (see done_exact).
           coalesce(nullif(current_setting('outbox.stats_exact_max_pages', true), '')::bigint, 8192)
               AS exact_max_pages
    FROM pg_class AS c
    WHERE c.oid = 'outbox_event'::regclass
),
live AS (
    -- Pending and failed events are counted exactly. Each half repeats the predicate
    -- of a partial index (outbox_event_claim_idx, outbox_event_failed_idx), so it reads
    -- only those rows, however many done rows the table holds. A pending event is
    -- "leased" while a drainer's lease on it runs (the old design's "processing" set).
    SELECT topic, status, count(*) AS events,
           count(*) FILTER (WHERE locked_by IS NOT NULL AND locked_until > now()) AS leased,
           min(created_at) AS oldest_created_at, max(attempts) AS max_attempts_seen
    FROM outbox_event
    WHERE status = 'pending'
    GROUP BY topic, status
    UNION ALL
    SELECT topic, status, count(*), 0, min(created_at), max(attempts)
    FROM outbox_event
    WHERE status = 'failed'
    GROUP BY topic, status
),
done_exact AS (
    -- Done events are counted exactly only while the table is small (at most 8192
    -- pages by default, 64 MB with 8 kB pages: a count then takes milliseconds; the
    -- setting outbox.stats_exact_max_pages changes the limit, e.g. ALTER DATABASE db
    -- SET outbox.stats_exact_max_pages = 0 to always estimate). The size test
    -- has no column in it, so PostgreSQL runs it once, as a one-time filter, and
    -- never starts the count on a larger table. OFFSET 0 keeps the test outside the
    -- count's subquery, above any parallel Gather: no worker is started for nothing.
    SELECT counted.*
    FROM (
        SELECT topic, status, count(*) AS events, 0::bigint AS leased,
               min(created_at) AS oldest_created_at, max(attempts) AS max_attempts_seen
        FROM outbox_event
        WHERE status = 'done'
        GROUP BY topic, status
        OFFSET 0
    ) AS counted
    WHERE (SELECT pages <= exact_max_pages FROM heap)
),
done_total AS (
    -- On a larger table: done = estimated rows - the exact pending and failed counts.
    -- (NULL without an estimate: greatest() would turn a NULL into 0.)
    SELECT CASE
               WHEN h.estimated_rows IS NOT NULL
                   THEN greatest(h.estimated_rows - (SELECT coalesce(sum(events), 0) FROM live), 0)
           END AS events
    FROM heap AS h
    WHERE h.pages > h.exact_max_pages
),
topic_share AS (
    -- How the table's rows split between topics, from the column statistics ANALYZE
    -- keeps (most common values and their frequencies; the same numbers the planner
    -- uses to estimate WHERE topic = ...).
    SELECT s.topic, s.share
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
),
done_estimated AS (
    SELECT ts.topic, 'done'::text AS status, round(dt.events * ts.share)::bigint AS events
    FROM done_total AS dt
    CROSS JOIN topic_share AS ts
    WHERE round(dt.events * ts.share) > 0
    UNION ALL
    -- The rest, which no topic's statistics account for (rare topics, or no
    -- statistics yet): one row with a NULL topic.
    SELECT NULL, 'done', rest.events
    FROM (
        SELECT round(dt.events * (1 - coalesce((SELECT sum(share) FROM topic_share), 0)))::bigint AS events
        FROM done_total AS dt
    ) AS rest
    WHERE rest.events IS NULL OR rest.events > 0
)
SELECT topic, status, events, leased, oldest_created_at,
       extract(epoch FROM now() - oldest_created_at)::double precision AS oldest_age_seconds,
       max_attempts_seen, false AS estimated
FROM live
UNION ALL
SELECT topic, status, events, leased, oldest_created_at,
       extract(epoch FROM now() - oldest_created_at)::double precision,
       max_attempts_seen, false
FROM done_exact
UNION ALL
SELECT topic, status, events, 0, NULL, NULL, NULL, true
FROM done_estimated;

COMMENT ON VIEW outbox_stats IS
'One row per topic and status: events, leased (pending under a live lease), oldest_created_at, '
'oldest_age_seconds, max_attempts_seen, estimated. Pending and failed rows are exact counts '
'served by partial indexes. Done rows are exact while outbox_event is at most 64 MB (setting '
'outbox.stats_exact_max_pages, default 8192 pages); above '
'that they are estimated (estimated = true) from pg_class.reltuples and the topic column''s '
'statistics, with no oldest/attempts, so the view never scans the done rows of a large table. '
'A NULL topic on an estimated row: done events not attributed to a topic.';

CREATE OR REPLACE VIEW outbox_failures AS
-- Newest first, served by the partial index outbox_event_failed_idx (id WHERE failed).
SELECT id, topic, key, attempts, last_error, created_at, processed_at AS failed_at
FROM outbox_event
WHERE status = 'failed'
ORDER BY id DESC;

COMMENT ON VIEW outbox_failures IS
'Failed events, newest first: id, topic, key, attempts, last_error, created_at, failed_at. '
'Read with a LIMIT; retry with manage.py outbox_retry.';

CREATE OR REPLACE VIEW outbox_throughput AS
-- The last 60 minutes, one row each, zeros included. Done rows come from
-- outbox_event_done_idx (processed_at WHERE done), so only the last hour's entries
-- are read; failed rows from outbox_event_failed_idx.
WITH done AS (
    SELECT date_trunc('minute', processed_at) AS minute, count(*) AS events
    FROM outbox_event
    WHERE status = 'done'
      AND processed_at >= date_trunc('minute', now()) - interval '59 minutes'
    GROUP BY 1
),
failed AS (
    SELECT date_trunc('minute', processed_at) AS minute, count(*) AS events
    FROM outbox_event
    WHERE status = 'failed'
      AND processed_at >= date_trunc('minute', now()) - interval '59 minutes'
    GROUP BY 1
)
SELECT m.minute, coalesce(d.events, 0) AS done, coalesce(f.events, 0) AS failed
FROM generate_series(
         date_trunc('minute', now()) - interval '59 minutes',
         date_trunc('minute', now()),
         interval '1 minute'
     ) AS m(minute)
LEFT JOIN done AS d ON d.minute = m.minute
LEFT JOIN failed AS f ON f.minute = m.minute
ORDER BY m.minute;

COMMENT ON VIEW outbox_throughput IS
'Events done and failed per minute over the last hour (60 rows, oldest first, zeros included).';
