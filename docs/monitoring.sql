-- Ready monitoring queries for the outbox, for psql (python manage.py dbshell), a
-- dashboard or an alerting job. Each is cheap on a table of tens of millions of rows
-- unless its comment says otherwise: they read the monitoring views (served by the
-- partial indexes of outbox_event) or the catalog, so the read-only role at the end of
-- this file can run every one of them. The views (migrations outbox 0002_operations
-- and 0005_monitoring, SQL in outbox/sql/views.sql and outbox/sql/monitoring.sql):
--
--   outbox_stats       one row per topic and status: events, leased, oldest_created_at,
--                      oldest_age_seconds, max_attempts_seen, estimated
--   outbox_failures    failed events, newest first
--   outbox_throughput  done and failed per minute over the last hour, and the wait of
--                      the last event done each minute (wait_seconds)
--   outbox_throughput_day  the same per 15 minutes over 24 hours (counts a day of done
--                      events: cost grows with them)
--   outbox_leases      pending events under a lease: expired, holder_connected
--   outbox_retention   the oldest done event
--   outbox_drainers    drainers connected now: state, ages, lock waits, xmin age
--   outbox_sessions    sessions of this database with an open transaction or snapshot,
--                      or waiting for a lock (no query text)
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
-- The lag, in seconds: how long the oldest event claimable now (not leased, not
-- waiting out a backoff) has waited for a drainer; NULL: nothing claimable. Alert
-- when it grows: drainers are down, too few, or stuck. A retried event counts from
-- its retry, not from its creation. `manage.py outbox_status --fail-if-lag-over 300`
-- does the same check from cron (exit 2).
SELECT max(lag_seconds) AS lag_seconds
FROM outbox_stats
WHERE status = 'pending';

-- Per topic, with the oldest pending event's age since creation beside it.
SELECT topic, round(lag_seconds) AS lag_seconds, oldest_available_at,
       round(oldest_age_seconds) AS created_seconds_ago, max_attempts_seen
FROM outbox_stats
WHERE status = 'pending'
ORDER BY lag_seconds DESC NULLS LAST;


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
SELECT minute, done, failed, wait_seconds FROM outbox_throughput;


-- ---------------------------------------------------------------- leases
-- Events whose lease has expired: their drainer died or stalled and has not
-- finished them. They are claimable again (one at a time, as suspects); a steady
-- number here means drainers keep dying on something. Reads the pending events
-- (the claim index, outbox_event_claim_idx).
SELECT id, topic, key, attempts, locked_by, locked_until, now() - locked_until AS expired_for
FROM outbox_leases
WHERE expired
ORDER BY id
LIMIT 50;

-- Leases still running whose holder's session is gone (a drainer was killed). A
-- running drainer frees them within OUTBOX['RESCUE_INTERVAL'] (5 s by default).
SELECT locked_by, count(*) AS events
FROM outbox_leases
WHERE NOT expired
  AND NOT holder_connected
GROUP BY locked_by;


-- ---------------------------------------------------------------- drainers
-- Drainers connected now: drain_outbox names its sessions outbox:<host>:<pid>:<random>
-- (two sessions each: one working, one LISTENing). Alert when there is none while
-- events are pending, or when one sits idle in a transaction or waits for a lock.
SELECT drainer, sessions, connected_since, states,
       round(idle_in_transaction_seconds) AS idle_in_transaction_seconds,
       waiting_for_lock, xmin_age, from_hosts
FROM outbox_drainers;

-- How many, for an alert (0 while outbox_stats shows pending events: start drainers).
SELECT count(*) AS drainers FROM outbox_drainers;


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

-- What holds dead rows back: the oldest transactions and snapshots of this database.
-- One that has been open for minutes (above all "idle in transaction") keeps every
-- row version deleted since, and every claim reads through them. No query text
-- here: `manage.py outbox_doctor`, run as the application's role, shows it.
SELECT pid, application_name, usename, state, round(transaction_age_seconds) AS transaction_age_seconds,
       xmin_age
FROM outbox_sessions
ORDER BY transaction_age_seconds DESC NULLS LAST
LIMIT 10;

-- Lock waits: who waits, on what, behind whom (blocked_by: pids, also in outbox_sessions).
SELECT pid, application_name, wait_event, round(state_age_seconds) AS waiting_seconds, blocked_by
FROM outbox_sessions
WHERE wait_event_type = 'Lock';

-- Retention: the oldest done event (first entry of outbox_event_done_idx). Older than
-- OUTBOX['RETENTION'] plus a purge interval or two means nobody purges.
SELECT oldest_done_at, round(oldest_done_age_seconds) AS age_seconds
FROM outbox_retention;


-- ---------------------------------------------------------------- a read-only role
-- outbox_monitor runs every query above and reads nothing else: not outbox_event (nor
-- its payloads), no other table (auth_user, django_session, the domain's), no other
-- session's query text (pg_stat_activity shows it '<insufficient privilege>') and no
-- session of another database. Never grant it pg_read_all_stats: Django binds
-- parameters on the client, so the query text of every session holds literal values,
-- the admin's session keys among them.
--
-- What it sees of the server's sessions comes through outbox_drainers and
-- outbox_sessions, SECURITY DEFINER functions owned by the role that ran migrate (its
-- rights, a fixed search_path, no query text). They see what that role sees: all of
-- its own role's sessions (the drainers', when they connect as it), and every session
-- of the database when it is a superuser or has pg_read_all_stats itself.
--
-- last_error, in outbox_failures, is the text of the exception that failed the event.
-- The outbox puts no payload in it, and pricing's messages name the result and the
-- constraint it breaks, never the row's values; but a handler of your own may quote
-- what it read. Leave outbox_failures out of the GRANT below if the role must not see
-- such text (the failure-rate and per-topic queries do not need it).
--
-- Run as the role that ran migrate (replace shop with the database's name, and public
-- with the schema if it is not public):
--
--   CREATE ROLE outbox_monitor LOGIN PASSWORD 'change-me';
GRANT CONNECT ON DATABASE shop TO outbox_monitor;
GRANT USAGE ON SCHEMA public TO outbox_monitor;
GRANT SELECT ON outbox_stats, outbox_failures, outbox_throughput, outbox_throughput_day, outbox_leases,
                outbox_retention, outbox_drainers, outbox_sessions
    TO outbox_monitor;
-- The functions behind outbox_stats, outbox_throughput(_day), outbox_drainers and
-- outbox_sessions (a view's reader must be allowed to call them; the migrations take
-- them from PUBLIC; 0006 grants outbox_throughput_rows to whoever could read
-- outbox_throughput already).
GRANT EXECUTE ON FUNCTION outbox_stats_by_topic(), outbox_throughput_rows(interval, interval),
                          outbox_drainer_sessions(), outbox_session_rows()
    TO outbox_monitor;
--
-- A role set up by an earlier version of this file had pg_read_all_stats and the
-- columns of outbox_event: take them back.
--
--   REVOKE pg_read_all_stats FROM outbox_monitor;
--   REVOKE SELECT ON outbox_event FROM outbox_monitor;
