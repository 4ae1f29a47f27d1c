-- Every runtime SQL statement of the outbox, in one file.
-- Names are noun-first so related statements sort together. Values are always
-- %(name)s parameters. `now()` is the transaction's start: each statement below
-- that uses it runs in a transaction of its own unless said otherwise.

-- name: drainer_session_setup
-- Name the session after the drainer (pg_stat_activity, the dead-holder rescue)
-- and bound every statement and lock wait, so nothing hangs silently.
-- enable_incremental_sort off: with it, the planner can serve the claim's
-- ORDER BY id, available_at from the primary key plus an incremental sort, and
-- walk every done row again on each claim (see event_claim_batch); without it
-- only the claim index gives that order. No drainer statement needs it.
-- client_connection_check_interval (PostgreSQL 14+): while a statement runs, the
-- backend checks every second that its drainer is still there, and ends the
-- statement and the session if not. Without it, the backend of a drainer killed
-- in the middle of a long statement (a slow handler query) runs on until the
-- statement ends or hits statement_timeout, holding the batch's row locks and
-- keeping the drainer's name in pg_stat_activity, so the dead-holder rescue
-- cannot tell that the drainer died.
SELECT set_config('application_name', %(application_name)s, false),
       set_config('statement_timeout', %(statement_timeout)s, false),
       set_config('lock_timeout', %(lock_timeout)s, false),
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, false),
       set_config('client_connection_check_interval', '1s', false),
       set_config('enable_incremental_sort', 'off', false);

-- name: event_claim_batch
-- Claim up to %(batch)s claimable events in id order, in a short transaction of
-- its own. The CTE selects and locks the rows once (a LIMIT inside a subquery of
-- the UPDATE's WHERE could be re-run by the planner); SKIP LOCKED lets parallel
-- drainers take disjoint batches without waiting on each other.
-- The claim counts the attempt now, not when the handler returns: a handler that
-- kills its process still walks its event towards 'failed'. The lease is written
-- into available_at as well, so an expired lease is claimable like a fresh event.
-- Two planner details, measured by bench/ (docs/BENCHMARKS.md):
-- * ORDER BY id, available_at is the claim index's own order (id is unique, so it
--   is the same order as by id). With ORDER BY id alone, statistics taken while a
--   backlog is pending make the primary key look cheaper, and each claim then
--   walks every done row before the first pending one: O(done) per claim. The
--   drainer's session turns incremental sort off (drainer_session_setup), or the
--   primary key plus an incremental sort could still serve this order.
-- * `(available_at <= now()) IS TRUE` is the same test, but not an index condition,
--   so it is checked on the heap row. A dead index entry (a claim's old version,
--   whose available_at is a future lease end) is then seen dead and marked killed
--   for the next scans; as an index condition it would be skipped unexamined and
--   rescanned by every claim until VACUUM.
-- Only events nobody holds a lease on (locked_by IS NULL): an event whose earlier
-- claim never finished (its drainer died or stalled; the lease ran out or was
-- rescued with locked_by kept) is a suspect, claimed by event_claim_suspects.
WITH claimable AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'pending'
      AND (available_at <= now()) IS TRUE
      AND locked_by IS NULL
      AND (%(topics)s::text[] IS NULL OR topic = ANY(%(topics)s::text[]))
    ORDER BY id, available_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_event AS e
SET attempts = e.attempts + 1,
    locked_by = %(me)s,
    locked_until = now() + make_interval(secs => %(lease)s),
    available_at = now() + make_interval(secs => %(lease)s)
FROM claimable
WHERE e.id = claimable.id
RETURNING e.id, e.topic, e.key, e.payload, e.attempts, e.created_at;

-- name: event_lock_owned
-- First statement of the processing transaction: lock the claimed events that
-- this drainer still owns. An event reclaimed by another drainer after our lease
-- ran out (we stalled) has another locked_by and is left out. What is returned
-- stays ours until commit: no other claim can take a locked row.
-- No SKIP LOCKED here: a concurrent claim can hold a row lock on an event it then
-- does not take. Under FOR UPDATE, a row updated after the claim's snapshot is
-- locked first and re-checked after (our claim committed meanwhile: locked_by is
-- set, the lease in the future), and the lock stays until that claim commits.
-- Skipping such a row would make us drop an event that is still ours, and it
-- would sit under our lease until it ran out. So wait (a claim is short; the wait
-- is bounded by lock_timeout), then read the committed locked_by. Locking in id
-- order, like the claims, so two lockers cannot deadlock.
SELECT id
FROM outbox_event
WHERE id = ANY(%(ids)s::bigint[])
  AND status = 'pending'
  AND locked_by = %(me)s
ORDER BY id
FOR UPDATE;

-- name: event_lock_keys
-- Serialise events that share a handler's lock key across drainers: one
-- transaction-level advisory lock per distinct key, taken in sorted order so two
-- drainers can never wait on each other in a cycle. Released at commit/rollback.
SELECT count(pg_advisory_xact_lock(ns, k))
FROM (
    SELECT DISTINCT ns, k
    FROM unnest(%(namespaces)s::int[], %(keys)s::int[]) AS t(ns, k)
    ORDER BY ns, k
) AS sorted_keys;

-- name: event_ack_done
-- Fenced by locked_by: a drainer that lost its lease updates zero rows.
UPDATE outbox_event
SET status = 'done',
    processed_at = now(),
    locked_until = NULL
WHERE id = ANY(%(ids)s::bigint[])
  AND status = 'pending'
  AND locked_by = %(me)s
RETURNING id;

-- name: event_ack_retry
-- The handler raised: back to pending after a per-event backoff (seconds,
-- computed by the drainer with jitter), the error kept, the lease dropped.
UPDATE outbox_event AS e
SET available_at = now() + make_interval(secs => r.delay),
    last_error = r.error,
    locked_by = NULL,
    locked_until = NULL
FROM unnest(%(ids)s::bigint[], %(errors)s::text[], %(delays)s::float8[]) AS r(id, error, delay)
WHERE e.id = r.id
  AND e.status = 'pending'
  AND e.locked_by = %(me)s
RETURNING e.id;

-- name: event_ack_failed
-- Out of attempts (or abandoned): failed for good, with the reason.
UPDATE outbox_event AS e
SET status = 'failed',
    last_error = r.error,
    processed_at = now(),
    locked_until = NULL
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS r(id, error)
WHERE e.id = r.id
  AND e.status = 'pending'
  AND e.locked_by = %(me)s
RETURNING e.id;

-- name: event_release_mine
-- After a reconnect: our old backend is gone and its transaction rolled back, but
-- our name is alive again, so the dead-holder rescue would not free the events we
-- had claimed. Free them now; the attempts they cost stay counted. locked_by is
-- kept: their run never finished, so they are suspects (event_claim_suspects) and
-- each one runs alone next time, in case one of them is what broke the connection.
UPDATE outbox_event
SET available_at = now(),
    locked_until = NULL
WHERE status = 'pending'
  AND locked_by = %(me)s
  AND available_at > now()
RETURNING id;

-- name: event_rescue_orphaned
-- Leases whose holder's session is gone from pg_stat_activity (its drainer
-- died): make them claimable now instead of waiting for the lease to run out.
-- Drainers set application_name to their identity, which is what locked_by holds.
WITH orphaned AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'pending'
      AND locked_by IS NOT NULL
      AND available_at > now()
      AND locked_by NOT IN (
          SELECT application_name FROM pg_stat_activity WHERE application_name IS NOT NULL
      )
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_event AS e
SET available_at = now(),
    locked_until = now()
FROM orphaned
WHERE e.id = orphaned.id
RETURNING e.id, e.locked_by;

-- name: event_count_pending_capped
-- Queue depth for the drainer's log line, read from the claim index and capped
-- so it costs at most %(cap)s index entries however deep the backlog is.
SELECT count(*) FROM (
    SELECT 1 FROM outbox_event WHERE status = 'pending' LIMIT %(cap)s
) AS capped;

-- name: event_retry_failed
-- Failed events back to pending, available now, attempts reset (the old
-- scheduler's periodic retry). last_error is kept until the next attempt.
UPDATE outbox_event
SET status = 'pending',
    attempts = 0,
    available_at = now(),
    locked_by = NULL,
    locked_until = NULL,
    processed_at = NULL
WHERE status = 'failed'
  AND (%(topics)s::text[] IS NULL OR topic = ANY(%(topics)s::text[]))
RETURNING id;

-- name: event_purge_done
-- One bounded chunk of the retention purge: done events processed before the
-- cut-off. Run repeatedly, each in its own transaction, until fewer than
-- %(chunk)s rows go, so no purge holds many locks or a long transaction.
WITH expired AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'done'
      AND processed_at < now() - make_interval(secs => %(older_than)s)
    ORDER BY processed_at
    LIMIT %(chunk)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM outbox_event AS e
USING expired
WHERE e.id = expired.id;

-- ===== operations =====
-- What outbox.services runs for the admin, the outbox_* commands and the Python API
-- (status, retry, mark_failed, delete_done, purge, doctor). Every write below runs
-- in a short transaction of its own, over at most %(chunk)s rows, and skips rows a
-- drainer holds locked right now (SKIP LOCKED): an operator never waits on, nor
-- blocks, a drainer.

-- name: stats_by_topic_status
-- The outbox_stats view (see outbox/sql/views.sql: exact pending/failed counts
-- from partial indexes, done rows estimated on a large table), optionally for
-- some topics only. One cheap query: the admin's summary, outbox_status.
SELECT topic, status, events, leased, oldest_created_at, oldest_age_seconds,
       max_attempts_seen, estimated
FROM outbox_stats
WHERE %(topics)s::text[] IS NULL OR topic = ANY(%(topics)s::text[])
ORDER BY topic NULLS LAST, status;

-- name: event_retry_failed_chunk
-- Failed events back to pending, available now, attempts reset, lease cleared,
-- oldest first, at most %(limit)s (NULL: no limit) of them. last_error is kept
-- (the reason it failed stays visible until the next attempt overwrites it).
-- Served by outbox_event_failed_idx.
WITH chosen AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'failed'
      AND (%(topics)s::text[] IS NULL OR topic = ANY(%(topics)s::text[]))
      AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_event AS e
SET status = 'pending',
    attempts = 0,
    available_at = now(),
    locked_by = NULL,
    locked_until = NULL,
    processed_at = NULL
FROM chosen
WHERE e.id = chosen.id
RETURNING e.id;

-- name: event_retry_failed_count
-- How many events event_retry_failed_chunk would take (outbox_retry --dry-run).
SELECT count(*)
FROM (
    SELECT 1
    FROM outbox_event
    WHERE status = 'failed'
      AND (%(topics)s::text[] IS NULL OR topic = ANY(%(topics)s::text[]))
      AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
    LIMIT %(limit)s
) AS matching;

-- name: event_mark_failed
-- An operator gives up on pending events: failed, with the reason (and the last
-- error the drainer saw, if any). An event a drainer is processing right now is
-- row-locked by its transaction and skipped; one that a drainer has claimed but
-- not yet locked is taken, and that drainer's fenced re-lock (status = 'pending')
-- then finds it gone and never runs it. Returns what the topic's on_failed needs.
WITH chosen AS (
    SELECT id
    FROM outbox_event
    WHERE id = ANY(%(ids)s::bigint[])
      AND status = 'pending'
    ORDER BY id
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_event AS e
SET status = 'failed',
    last_error = left(
        %(reason)s || CASE WHEN e.last_error <> '' THEN E'\nprevious error: ' || e.last_error ELSE '' END,
        %(max_length)s
    ),
    processed_at = now(),
    locked_until = NULL
FROM chosen
WHERE e.id = chosen.id
RETURNING e.id, e.topic, e.key, e.payload, e.attempts, e.created_at;

-- name: event_delete_done
-- Delete the given events that are done (nothing else: a pending or failed event
-- is work not yet finished).
WITH chosen AS (
    SELECT id
    FROM outbox_event
    WHERE id = ANY(%(ids)s::bigint[])
      AND status = 'done'
    ORDER BY id
    FOR UPDATE SKIP LOCKED
)
DELETE FROM outbox_event AS e
USING chosen
WHERE e.id = chosen.id
RETURNING e.id;

-- name: event_purge_failed
-- One bounded chunk of `outbox_purge --status failed`: failed events that failed
-- before the cut-off, like event_purge_done for done ones.
WITH expired AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'failed'
      AND coalesce(processed_at, created_at) < now() - make_interval(secs => %(older_than)s)
    ORDER BY id
    LIMIT %(chunk)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM outbox_event AS e
USING expired
WHERE e.id = expired.id;

-- name: event_purge_done_count
-- How many events event_purge_done would delete (outbox_purge --dry-run); reads
-- outbox_event_done_idx only.
SELECT count(*)
FROM outbox_event
WHERE status = 'done'
  AND processed_at < now() - make_interval(secs => %(older_than)s);

-- name: event_purge_failed_count
SELECT count(*)
FROM outbox_event
WHERE status = 'failed'
  AND coalesce(processed_at, created_at) < now() - make_interval(secs => %(older_than)s);

-- name: table_estimated_rows
-- The planner's estimate of a table's rows (reltuples scaled to its current size,
-- as the planner scales it), or NULL before its first VACUUM/ANALYZE. The admin's
-- paginator shows it instead of a COUNT(*) of a large unfiltered table.
SELECT CASE
           WHEN c.reltuples < 0 THEN NULL
           WHEN c.relpages > 0
               THEN (c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::bigint))::bigint
           ELSE c.reltuples::bigint
       END
FROM pg_class AS c
WHERE c.oid = to_regclass(quote_ident(%(table)s));

-- name: doctor_explain
-- Prefixed to event_claim_batch by outbox_doctor, so that it explains the very
-- statement the drainers run (EXPLAIN without ANALYZE: nothing is executed).
EXPLAIN (FORMAT JSON)

-- name: doctor_claim_index
-- Whether the claim index is there and valid (a failed CREATE INDEX CONCURRENTLY
-- leaves it INVALID: the planner then ignores it), and the table's size in pages.
SELECT (SELECT i.indisvalid FROM pg_index AS i WHERE i.indexrelid = to_regclass('outbox_event_claim_idx')),
       pg_relation_size('outbox_event'::regclass) / current_setting('block_size')::bigint;

-- name: doctor_old_transactions
-- Sessions of this database, other than ours, whose transaction has been open for
-- more than %(max_age)s seconds. Each one holds back the xmin horizon: VACUUM keeps
-- every row version deleted or updated since it began, so dead claims and acks of
-- outbox_event pile up and every claim reads through them.
SELECT pid, coalesce(application_name, ''), coalesce(usename, ''), coalesce(state, ''),
       extract(epoch FROM now() - xact_start)::double precision,
       age(backend_xmin),
       left(coalesce(query, ''), 200)
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND xact_start < now() - make_interval(secs => %(max_age)s)
ORDER BY xact_start;

-- name: doctor_prepared_transactions
-- Forgotten two-phase transactions hold the xmin horizon back like open ones.
SELECT gid, owner, extract(epoch FROM now() - prepared)::double precision
FROM pg_prepared_xacts
WHERE database = current_database()
  AND prepared < now() - make_interval(secs => %(max_age)s)
ORDER BY prepared;

-- name: doctor_replication_slots
-- Physical replication slots with an xmin (a standby with hot_standby_feedback)
-- hold the horizon back for every database; an inactive one does so forever.
SELECT slot_name, active, age(xmin)
FROM pg_replication_slots
WHERE xmin IS NOT NULL
ORDER BY age(xmin) DESC;

-- name: doctor_table_health
-- Dead row versions and vacuum recency of outbox_event (statistics counters,
-- updated by every backend shortly after its transactions end).
SELECT n_live_tup, n_dead_tup,
       greatest(last_autovacuum, last_vacuum),
       extract(epoch FROM now() - greatest(last_autovacuum, last_vacuum))::double precision,
       autovacuum_count + vacuum_count
FROM pg_stat_user_tables
WHERE relid = 'outbox_event'::regclass;

-- name: doctor_orphaned_leases
-- Leases still running whose holder's session is gone (the read-only twin of
-- event_rescue_orphaned, which a running drainer applies every RESCUE_INTERVAL).
SELECT count(*), coalesce(array_agg(DISTINCT locked_by), '{}')
FROM outbox_event
WHERE status = 'pending'
  AND locked_by IS NOT NULL
  AND available_at > now()
  AND locked_by NOT IN (
      SELECT application_name FROM pg_stat_activity WHERE application_name IS NOT NULL
  );

-- name: doctor_drainers
-- Drainers connected to this database now: drain_outbox names its sessions after
-- its identity, outbox:<host>:<pid>:<random> (a drainer has a second session for
-- LISTEN).
SELECT application_name, count(*), min(backend_start)
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name LIKE 'outbox:%%'
GROUP BY application_name
ORDER BY application_name;

-- name: doctor_oldest_done
-- The oldest done event's processed_at (the first entry of outbox_event_done_idx):
-- how far behind the retention purge is.
SELECT min(processed_at), extract(epoch FROM now() - min(processed_at))::double precision
FROM outbox_event
WHERE status = 'done';

-- name: doctor_trigger_state
-- A trigger's tgenabled: O (fires), A (fires always), R (fires only in replica
-- sessions: not for normal writers), D (disabled); no row when it is missing.
SELECT t.tgenabled
FROM pg_trigger AS t
WHERE t.tgrelid = to_regclass(quote_ident(%(table)s))
  AND t.tgname = %(name)s;

-- ===== faults: suspects, per-key order (see docs/guarantees.md) =====

-- name: event_claim_suspects
-- Claim up to %(limit)s suspects: claimable events whose previous claim never
-- finished (locked_by still set: the holder died, or stalled past its lease). One
-- of them may be a poison event that kills its process, so the drainer runs each
-- one alone, and the attempt is NOT counted here but by event_count_attempt right
-- before its handler runs: a drainer that dies on one suspect costs the others
-- nothing. Runs in the transaction of event_claim_batch.
-- Plan: the candidates come from the small partial index on leased rows
-- (outbox_event_leased_idx), materialised without a LIMIT. With ORDER BY id LIMIT
-- on the table itself, the planner may walk the claim index in id order instead
-- and read the whole backlog whenever there is no suspect at all.
WITH candidates AS MATERIALIZED (
    SELECT id
    FROM outbox_event
    WHERE status = 'pending'
      AND locked_by IS NOT NULL
      AND available_at <= now()
      AND (%(topics)s::text[] IS NULL OR topic = ANY(%(topics)s::text[]))
),
suspects AS (
    SELECT id
    FROM outbox_event
    WHERE id = ANY(ARRAY(SELECT id FROM candidates ORDER BY id LIMIT 4 * %(limit)s))
      AND status = 'pending'
      AND locked_by IS NOT NULL
      AND available_at <= now()
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_event AS e
SET locked_by = %(me)s,
    locked_until = now() + make_interval(secs => %(lease)s),
    available_at = now() + make_interval(secs => %(lease)s)
FROM suspects
WHERE e.id = suspects.id
RETURNING e.id, e.topic, e.key, e.payload, e.attempts, e.created_at;

-- name: event_count_attempt
-- Count one attempt of a suspect, committed on its own right before its handler
-- runs, so that a handler which kills the process has used it up. Fenced: no row
-- means the lease was lost.
UPDATE outbox_event
SET attempts = attempts + 1
WHERE id = %(id)s
  AND status = 'pending'
  AND locked_by = %(me)s
RETURNING attempts;

-- name: event_defer
-- Give claimed events back without running them, each claimable again after its
-- %(delays)s seconds: an earlier event of the same lock key must go first, a key
-- lock wait timed out, or the drainer is stopping. The delay keeps them out of
-- the next claims, which would otherwise take the same blocked events again and
-- again while other keys' events wait behind them. %(refunds)s takes back the
-- attempts counted for them (1 if counted, 0 if not). A suspect (%(suspects)s
-- true) keeps locked_by, so it stays a suspect and still runs alone next time;
-- the others become plain pending events. last_error is left as it is: later
-- events of the key keep waiting for an event that never failed
-- (event_list_earlier_unfinished).
UPDATE outbox_event AS e
SET available_at = now() + make_interval(secs => r.delay),
    locked_until = NULL,
    locked_by = CASE WHEN r.suspect THEN e.locked_by END,
    attempts = greatest(e.attempts - r.refund, 0)
FROM unnest(%(ids)s::bigint[], %(suspects)s::bool[], %(refunds)s::int[], %(delays)s::float8[])
    AS r(id, suspect, refund, delay)
WHERE e.id = r.id
  AND e.status = 'pending'
  AND e.locked_by = %(me)s
RETURNING e.id;

-- name: event_list_earlier_unfinished
-- Per-key order, in the processing transaction once the key locks are held: the
-- events of %(topics)s (the topics of one lock group) with an id below %(before)s,
-- not among %(mine)s and still pending. The drainer computes their lock keys and
-- defers each of its events that has an earlier one of the same key. An event
-- whose handler has failed before (last_error set) counts only while it is under
-- a lease or claimable now, not while it waits out its retry backoff: a failing
-- event must not hold back the events behind it. in_flight: under a live lease
-- of another drainer (worth waiting for; a deferral or a rescue clears
-- locked_until). Reads the claim index below our ids, where only unfinished
-- events are: about the events in flight. ORDER BY id, available_at is the claim
-- index's order, as in event_claim_batch: with ORDER BY id alone the planner
-- walked the primary key and filtered out every done event below our ids, each
-- batch (20 ms per batch at 20,000 done events, growing; bench/profile_drain.py).
SELECT id, topic, key, payload, attempts, created_at,
       (locked_by <> %(me)s AND locked_until > now()) IS TRUE AS in_flight
FROM outbox_event
WHERE status = 'pending'
  AND id < %(before)s
  AND id <> ALL(%(mine)s::bigint[])
  AND topic = ANY(%(topics)s::text[])
  AND (last_error = '' OR locked_by IS NOT NULL OR available_at <= now())
ORDER BY id, available_at;
