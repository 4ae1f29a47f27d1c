-- Every runtime SQL statement of the outbox, in one file.
-- Names are noun-first so related statements sort together. Values are always
-- %(name)s parameters. `now()` is the transaction's start: each statement below
-- that uses it runs in a transaction of its own unless said otherwise.

-- name: drainer_session_setup
-- Name the session after the drainer (pg_stat_activity, the dead-holder rescue)
-- and bound every statement and lock wait, so nothing hangs silently.
SELECT set_config('application_name', %(application_name)s, false),
       set_config('statement_timeout', %(statement_timeout)s, false),
       set_config('lock_timeout', %(lock_timeout)s, false),
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, false);

-- name: event_claim_batch
-- Claim up to %(batch)s claimable events in id order, in a short transaction of
-- its own. The CTE selects and locks the rows once (a LIMIT inside a subquery of
-- the UPDATE's WHERE could be re-run by the planner); SKIP LOCKED lets parallel
-- drainers take disjoint batches without waiting on each other.
-- The claim counts the attempt now, not when the handler returns: a handler that
-- kills its process still walks its event towards 'failed'. The lease is written
-- into available_at as well, so an expired lease is claimable like a fresh event.
WITH claimable AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'pending'
      AND available_at <= now()
      AND (%(topics)s::text[] IS NULL OR topic = ANY(%(topics)s::text[]))
    ORDER BY id
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
-- ran out (we stalled) has another locked_by and is left out; one whose row is
-- locked right now is being reclaimed, so SKIP LOCKED leaves it out too. What is
-- returned stays ours until commit: no other claim can take a locked row.
SELECT id
FROM outbox_event
WHERE id = ANY(%(ids)s::bigint[])
  AND status = 'pending'
  AND locked_by = %(me)s
ORDER BY id
FOR UPDATE SKIP LOCKED;

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

-- name: event_release
-- Give claimed events back, available now. %(refund)s is 1 for events whose
-- handler never ran (their claim should not count) and 0 otherwise.
UPDATE outbox_event
SET available_at = now(),
    locked_by = NULL,
    locked_until = NULL,
    attempts = greatest(attempts - %(refund)s, 0)
WHERE id = ANY(%(ids)s::bigint[])
  AND status = 'pending'
  AND locked_by = %(me)s
RETURNING id;

-- name: event_release_mine
-- After a reconnect: our old backend is gone and its transaction rolled back, but
-- our name is alive again, so the dead-holder rescue would not free the events we
-- had claimed. Free them now; the attempts they cost stay counted.
UPDATE outbox_event
SET available_at = now(),
    locked_by = NULL,
    locked_until = NULL
WHERE status = 'pending'
  AND locked_by = %(me)s
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
