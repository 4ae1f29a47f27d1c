-- Ready monitoring queries for the outbox, for psql (python manage.py dbshell), a
-- dashboard or an alerting job. Each is cheap on a table of tens of millions of rows
-- unless its comment says otherwise: they read the monitoring views, the partial
-- indexes of outbox_event, or the catalog. The views (created by migration
-- outbox 0002_operations, SQL in outbox/sql/views.sql):
--
--   outbox_stats       one row per topic and status: events, leased, oldest_created_at,
--                      oldest_age_seconds, max_attempts_seen, estimated
--   outbox_failures    failed events, newest first
--   outbox_throughput  done and failed per minute over the last hour
--
-- On a large table (over 64 MB) outbox_stats estimates the done rows from
-- PostgreSQL's statistics (estimated = true); pending and failed are always exact.


-- ---------------------------------------------------------------- queue depth
-- Events waiting per topic (the old design's LLEN), and how many a drainer is
-- working on right now (the old "processing" set: pending under a live lease).
SELECT topic, events AS pending, leased AS processing, events - leased AS queued
FROM outbox_stats
WHERE status = 'pending'
ORDER BY events DESC;

-- Everything at a glance: per status, all topics.
SELECT status, sum(events) AS events, bool_or(estimated) AS estimated
FROM outbox_stats
GROUP BY status
ORDER BY status;


-- ---------------------------------------------------------------- lag
-- Age of the oldest pending event, in seconds (NULL: nothing pending). Alert when it
-- grows: drainers are down, too few, or stuck. `manage.py outbox_status
-- --fail-if-lag-over 300` does the same check from cron (exit 2).
SELECT max(oldest_age_seconds) AS lag_seconds
FROM outbox_stats
WHERE status = 'pending';

-- Per topic.
SELECT topic, oldest_created_at, round(oldest_age_seconds) AS lag_seconds, max_attempts_seen
FROM outbox_stats
WHERE status = 'pending'
ORDER BY oldest_age_seconds DESC;


-- ---------------------------------------------------------------- failures
-- Failure rate over the last hour: failed / (done + failed). A handler bug or a
-- broken dependency shows here first.
SELECT sum(done) AS done, sum(failed) AS failed,
       round(100.0 * sum(failed) / nullif(sum(done) + sum(failed), 0), 2) AS failed_percent
FROM outbox_throughput;

-- Failed events still in the table, per topic, and the latest ones with their errors.
SELECT topic, events AS failed, oldest_created_at FROM outbox_stats WHERE status = 'failed';
SELECT id, topic, key, attempts, failed_at, left(last_error, 200) AS error
FROM outbox_failures
LIMIT 20;

-- The most common errors (reads the failed rows only: outbox_event_failed_idx).
SELECT split_part(last_error, E'\n', 1) AS error, count(*) AS events, max(failed_at) AS last_seen
FROM outbox_failures
GROUP BY 1
ORDER BY events DESC
LIMIT 10;


-- ---------------------------------------------------------------- throughput
-- Done and failed per minute, the last hour, oldest first (zeros included).
SELECT minute, done, failed FROM outbox_throughput;


-- ---------------------------------------------------------------- leases
-- Events whose lease has expired: their drainer died or stalled and has not
-- finished them. They are claimable again (one at a time, as suspects); a steady
-- number here means drainers keep dying on something. Reads the small partial
-- index of leased rows (outbox_event_leased_idx).
SELECT id, topic, key, attempts, locked_by, locked_until, now() - locked_until AS expired_for
FROM outbox_event
WHERE status = 'pending'
  AND locked_by IS NOT NULL
  AND locked_until <= now()
ORDER BY id
LIMIT 50;

-- Leases still running whose holder's session is gone (a drainer was killed). A
-- running drainer frees them within OUTBOX['RESCUE_INTERVAL'] (5 s by default).
SELECT locked_by, count(*) AS events
FROM outbox_event
WHERE status = 'pending'
  AND locked_by IS NOT NULL
  AND locked_until > now()
  AND locked_by NOT IN (SELECT application_name FROM pg_stat_activity WHERE application_name IS NOT NULL)
GROUP BY locked_by;


-- ---------------------------------------------------------------- drainers
-- Drainers connected now: drain_outbox names its sessions outbox:<host>:<pid>:<random>
-- (two sessions each: one working, one LISTENing). Alert when it is 0 while events
-- are pending. Seeing other sessions' state needs pg_read_all_stats (see the GRANTs).
SELECT application_name AS drainer,
       count(*) AS sessions,
       min(backend_start) AS connected_since,
       max(now() - state_change) FILTER (WHERE state = 'idle in transaction') AS idle_in_transaction_for,
       string_agg(DISTINCT coalesce(client_addr::text, 'local'), ', ') AS from_hosts
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name LIKE 'outbox:%'
GROUP BY application_name
ORDER BY application_name;


-- ---------------------------------------------------------------- table health
-- Sizes of outbox_event, its indexes, and its dead row versions. A claim index much
-- larger than the pending count justifies, or dead rows piling up, means vacuum is
-- behind or held back (next query). `manage.py outbox_doctor` checks both.
SELECT pg_size_pretty(pg_relation_size('outbox_event')) AS heap,
       pg_size_pretty(pg_indexes_size('outbox_event')) AS indexes,
       pg_size_pretty(pg_total_relation_size('outbox_event')) AS total,
       s.n_live_tup AS live_rows,
       s.n_dead_tup AS dead_rows,
       round(100.0 * s.n_dead_tup / nullif(s.n_live_tup + s.n_dead_tup, 0), 1) AS dead_percent,
       s.last_autovacuum, s.last_vacuum, s.last_autoanalyze, s.autovacuum_count
FROM pg_stat_user_tables AS s
WHERE s.relid = 'outbox_event'::regclass;

SELECT indexrelname AS index, pg_size_pretty(pg_relation_size(indexrelid)) AS size, idx_scan AS scans
FROM pg_stat_user_indexes
WHERE relid = 'outbox_event'::regclass
ORDER BY pg_relation_size(indexrelid) DESC;

-- What holds dead rows back: the oldest transactions of this database. One that has
-- been open for minutes (above all "idle in transaction") keeps every row version
-- deleted since, and every claim reads through them.
SELECT pid, application_name, usename, state, now() - xact_start AS transaction_age,
       age(backend_xmin) AS xmin_age, left(query, 100) AS query
FROM pg_stat_activity
WHERE datname = current_database()
  AND xact_start IS NOT NULL
ORDER BY xact_start
LIMIT 10;

-- Retention: the oldest done event (first entry of outbox_event_done_idx). Older than
-- OUTBOX['RETENTION'] plus a purge interval or two means nobody purges.
SELECT min(processed_at) AS oldest_done, now() - min(processed_at) AS age
FROM outbox_event
WHERE status = 'done';


-- ---------------------------------------------------------------- a read-only role
-- outbox_monitor: reads the views and the columns the queries above need, never the
-- payloads, and writes nothing. Run as the owner of the tables (replace shop with
-- the database's name, and the schema if it is not public).
--
--   CREATE ROLE outbox_monitor LOGIN PASSWORD 'change-me';
GRANT CONNECT ON DATABASE shop TO outbox_monitor;
GRANT USAGE ON SCHEMA public TO outbox_monitor;
GRANT SELECT ON outbox_stats, outbox_failures, outbox_throughput TO outbox_monitor;
-- Every column but payload. outbox_stats needs them too: it reads outbox_event through
-- the function outbox_stats_rows(), which runs with the reader's rights, and PostgreSQL
-- shows a role the column statistics (pg_stats) only of columns it may read (the
-- per-topic estimate of done rows comes from those of topic).
GRANT SELECT (id, topic, key, status, attempts, available_at, locked_by, locked_until,
              last_error, created_at, processed_at)
    ON outbox_event TO outbox_monitor;
-- Other sessions' state and query text in pg_stat_activity (drainers, old transactions).
GRANT pg_read_all_stats TO outbox_monitor;
