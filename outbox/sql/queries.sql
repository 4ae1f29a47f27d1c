-- Every runtime SQL statement of the outbox, in one file.
-- Names are noun-first so related statements sort together. Values are always
-- %(name)s parameters. `now()` is the transaction's start: each statement below
-- that uses it runs in a transaction of its own unless said otherwise.

-- name: drainer_session_setup
-- Name the session after the drainer and bound every wait; a killed drainer's backend
-- ends within 1 s; the claim's order comes only from the claim index, never from a
-- sort (docs/guarantees.md#sessions, #the-claim).
SELECT set_config('application_name', %(application_name)s, false),
       set_config('statement_timeout', %(statement_timeout)s, false),
       set_config('lock_timeout', %(lock_timeout)s, false),
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, false),
       set_config('client_connection_check_interval', '1s', false),
       set_config('enable_incremental_sort', 'off', false);

-- ----- buckets: who may claim which ordered events (docs/guarantees.md#per-key-order)

-- name: bucket_ensure_rows
-- The lease rows of the ordered topics this drainer handles, made once at start-up.
INSERT INTO outbox_bucket (topic, bucket)
SELECT t.topic, b.bucket
FROM unnest(%(topics)s::text[]) AS t(topic)
CROSS JOIN generate_series(0, %(buckets)s - 1) AS b(bucket)
ON CONFLICT DO NOTHING;

-- name: bucket_rebalance
-- Heartbeat, then per ordered topic keep up to the fair share ceil(buckets / live
-- drainers), give back the rest, take free ones; SKIP LOCKED: a bucket in use changes
-- hands after its transaction (docs/guarantees.md#per-key-order). Returns what we own.
WITH member AS (
    INSERT INTO outbox_drainer AS d (name, topics, host, pid, direct)
    VALUES (%(me)s, %(handled)s::text[], %(host)s, %(pid)s, %(direct)s)
    ON CONFLICT (name) DO UPDATE SET topics = excluded.topics, seen_at = now()
    RETURNING d.name
),
live AS (
    SELECT d.name, d.topics
    FROM outbox_drainer AS d
    WHERE d.name <> %(me)s
      AND d.seen_at > now() - make_interval(secs => %(expiry)s)
      AND (NOT d.direct OR d.name IN (
          SELECT a.application_name FROM pg_stat_activity AS a WHERE a.datname = current_database()))
    UNION ALL
    SELECT %(me)s, %(handled)s::text[]
),
share AS (
    SELECT t.topic, ceil(%(buckets)s::numeric / count(*))::int AS share
    FROM unnest(%(topics)s::text[]) AS t(topic)
    JOIN live AS l ON t.topic = ANY(l.topics)
    GROUP BY t.topic
),
mine AS (
    SELECT b.topic, b.bucket, row_number() OVER (PARTITION BY b.topic ORDER BY b.bucket) AS n
    FROM outbox_bucket AS b
    WHERE b.topic = ANY(%(topics)s::text[]) AND b.owner = %(me)s
),
room AS (
    SELECT s.topic, s.share - count(m.bucket) FILTER (WHERE m.n <= s.share) AS room
    FROM share AS s
    LEFT JOIN mine AS m ON m.topic = s.topic
    GROUP BY s.topic, s.share
),
free AS (
    SELECT b.topic, b.bucket
    FROM outbox_bucket AS b
    WHERE b.topic = ANY(%(topics)s::text[])
      AND (b.owner IS NULL OR b.owner NOT IN (SELECT name FROM live))
    FOR UPDATE SKIP LOCKED
),
take AS (
    SELECT f.topic, f.bucket
    FROM (SELECT f.*, row_number() OVER (PARTITION BY f.topic ORDER BY random()) AS n FROM free AS f) AS f
    JOIN room AS r ON r.topic = f.topic
    WHERE f.n <= r.room
),
give AS (
    SELECT b.topic, b.bucket
    FROM outbox_bucket AS b
    WHERE (b.topic, b.bucket) IN (
        SELECT m.topic, m.bucket FROM mine AS m JOIN share AS s ON s.topic = m.topic WHERE m.n > s.share)
      AND b.owner = %(me)s
    FOR UPDATE SKIP LOCKED
),
changed AS (
    UPDATE outbox_bucket AS b
    SET owner = CASE WHEN c.take THEN %(me)s END,
        owned_since = CASE WHEN c.take THEN now() END
    FROM (SELECT topic, bucket, true AS take FROM take
          UNION ALL
          SELECT topic, bucket, false FROM give) AS c
    WHERE b.topic = c.topic AND b.bucket = c.bucket
    RETURNING b.topic, b.bucket, c.take
)
SELECT topic, bucket FROM mine WHERE (topic, bucket) NOT IN (SELECT topic, bucket FROM give)
UNION
SELECT topic, bucket FROM changed WHERE take
ORDER BY 1, 2;

-- name: drainer_leave
-- Graceful stop: free this drainer's buckets for the others at once and forget it
-- (a data-modifying CTE always runs to completion, read or not). A bucket row another
-- session holds locked is skipped: its owner is gone, so the next rebalance frees it.
WITH freed AS (
    UPDATE outbox_bucket SET owner = NULL, owned_since = NULL
    WHERE (topic, bucket) IN (SELECT topic, bucket FROM outbox_bucket WHERE owner = %(me)s FOR UPDATE SKIP LOCKED)
)
DELETE FROM outbox_drainer WHERE name = %(me)s;

-- ----- one cycle: claim, process, ack

-- name: event_claim_batch
-- Claim up to %(batch)s events, one short claim-index range per handled topic; an owned
-- bucket only up to its first event another session holds, never waiting on it; nothing
-- counted (docs/guarantees.md#the-claim, #foreign-locks).
WITH wanted AS (
    SELECT topic, decode(mask, 'hex') AS mask
    FROM unnest(%(ordered)s::text[], %(masks)s::text[]) AS m(topic, mask)
),
candidates AS (
    SELECT c.id, c.topic, c.bucket, c.suspect
    FROM wanted AS w
    CROSS JOIN LATERAL (
        SELECT e.id, e.topic, coalesce(e.bucket, 0) AS bucket, e.locked_by IS NOT NULL AS suspect
        FROM outbox_event AS e
        WHERE e.status = 'pending'
          AND e.topic = w.topic
          AND get_bit(w.mask, coalesce(e.bucket, 0)) <> 0  -- "<> 0": estimated true for most rows
          AND (e.locked_by IS NOT NULL OR (e.available_at <= now()) IS TRUE)
        ORDER BY e.id, e.bucket
        LIMIT %(batch)s
    ) AS c
),
locked AS (
    SELECT e.id
    FROM outbox_event AS e
    WHERE e.id IN (SELECT id FROM candidates)
      AND e.status = 'pending'
    FOR UPDATE SKIP LOCKED
),
busy AS (
    SELECT c.topic, c.bucket, min(c.id) AS first_id
    FROM candidates AS c
    WHERE c.id NOT IN (SELECT id FROM locked)
    GROUP BY c.topic, c.bucket
),
held AS (
    SELECT b.topic, b.bucket
    FROM outbox_bucket AS b
    WHERE (b.topic, b.bucket) IN (SELECT topic, bucket FROM candidates)
      AND b.owner = %(me)s
    FOR SHARE SKIP LOCKED
),
unordered AS (
    SELECT c.id, c.suspect
    FROM unnest(%(unordered)s::text[]) AS w(topic)
    CROSS JOIN LATERAL (
        SELECT e.id, e.locked_by IS NOT NULL AS suspect
        FROM outbox_event AS e
        WHERE e.status = 'pending'
          AND e.topic = w.topic
          AND (e.available_at <= now()) IS TRUE
        ORDER BY e.id, e.bucket
        LIMIT %(batch)s
        FOR UPDATE OF e SKIP LOCKED
    ) AS c
),
chosen AS (
    SELECT c.id, c.suspect
    FROM candidates AS c
    LEFT JOIN busy AS b ON b.topic = c.topic AND b.bucket = c.bucket
    WHERE (c.topic, c.bucket) IN (SELECT topic, bucket FROM held)
      AND c.id IN (SELECT id FROM locked)
      AND (b.first_id IS NULL OR c.id < b.first_id)
    UNION ALL
    SELECT id, suspect FROM unordered
    ORDER BY id
    LIMIT %(batch)s
),
claimed AS (
    UPDATE outbox_event AS e
    SET locked_by = %(me)s,
        locked_until = now() + make_interval(secs => %(lease)s),
        available_at = now() + make_interval(secs => %(lease)s)
    FROM chosen
    WHERE e.id = chosen.id
    RETURNING e.id, e.topic, e.key, e.payload, e.attempts, e.created_at, chosen.suspect
)
-- The payload as text, not at all past %(max_payload)s bytes; this COMMIT does not wait
-- for its WAL flush: a lost lease only makes its events claimable again (#the-claim).
SELECT c.id, c.topic, c.key, CASE WHEN octet_length(p.text) <= %(max_payload)s THEN p.text END,
       octet_length(p.text), c.attempts, c.created_at, c.suspect
FROM claimed AS c, LATERAL (SELECT c.payload::text AS text) AS p
WHERE set_config('synchronous_commit', 'off', true) = 'off'
ORDER BY c.id;

-- name: event_count_attempt
-- A suspect's attempt, committed on its own just before it runs alone: a handler that
-- kills its process has used it up. Fenced: no row means another drainer has it now.
UPDATE outbox_event
SET attempts = attempts + 1
WHERE id = %(id)s
  AND status = 'pending'
  AND locked_by = %(me)s
RETURNING attempts;

-- name: event_lock_batch
-- The claimed events still ours, locked until COMMIT, each with whether its bucket is
-- still ours (FOR SHARE); waits (lock_timeout) only on an event of its own claim
-- (docs/guarantees.md#processing, #foreign-locks).
WITH mine AS (
    SELECT e.id, e.topic, coalesce(e.bucket, 0) AS bucket
    FROM outbox_event AS e
    WHERE e.id = ANY(%(ids)s::bigint[])
      AND e.status = 'pending'
      AND e.locked_by = %(me)s
    ORDER BY e.id
    FOR UPDATE
),
held AS (
    SELECT b.topic, b.bucket
    FROM outbox_bucket AS b
    WHERE (b.topic, b.bucket) IN (SELECT topic, bucket FROM mine WHERE topic = ANY(%(ordered)s::text[]))
      AND b.owner = %(me)s
    ORDER BY b.topic, b.bucket
    FOR SHARE SKIP LOCKED
)
SELECT m.id,
       NOT (m.topic = ANY(%(ordered)s::text[])) OR (m.topic, m.bucket) IN (SELECT topic, bucket FROM held)
FROM mine AS m;

-- name: event_ack_done
-- The handler's events done, in its transaction; attempts + 1 except for suspects,
-- whose attempt was counted before they ran. Fenced by locked_by: a drainer that lost
-- its lease updates nothing.
UPDATE outbox_event
SET status = 'done',
    attempts = attempts + (id <> ALL(%(counted)s::bigint[]))::int,
    processed_at = now(),
    locked_until = NULL
WHERE id = ANY(%(ids)s::bigint[])
  AND status = 'pending'
  AND locked_by = %(me)s;

-- name: event_ack_failures
-- Events whose run raised: back to pending after their backoff (seconds, with jitter,
-- from the drainer), or failed for good; the error kept, the attempt counted.
UPDATE outbox_event AS e
SET status = CASE WHEN r.final THEN 'failed' ELSE 'pending' END,
    attempts = r.attempts,
    last_error = r.error,
    available_at = CASE WHEN r.final THEN e.available_at ELSE now() + make_interval(secs => r.delay) END,
    processed_at = CASE WHEN r.final THEN now() END,
    locked_by = CASE WHEN r.final THEN e.locked_by END,
    locked_until = NULL
FROM unnest(%(failed_ids)s::bigint[], %(attempts)s::int[], %(finals)s::bool[], %(errors)s::text[],
            %(delays)s::float8[]) AS r(id, attempts, final, error, delay)
WHERE e.id = r.id
  AND e.status = 'pending'
  AND e.locked_by = %(me)s
RETURNING e.id, r.final;

-- name: event_release
-- Give claimed events back unrun (a stop was asked for, or their bucket changed
-- hands), claimable again now. Suspects stay suspects (locked_by kept) and still run
-- alone next time; nothing was counted for the others.
UPDATE outbox_event
SET available_at = now(),
    locked_until = NULL,
    locked_by = CASE WHEN id = ANY(%(release_suspects)s::bigint[]) THEN locked_by END
WHERE id = ANY(%(release_ids)s::bigint[])
  AND status = 'pending'
  AND locked_by = %(me)s;

-- name: transaction_begin
-- Sent in one pipeline with event_lock_batch: a processing transaction begins and
-- locks its batch in one round trip (docs/guarantees.md#round-trips).
BEGIN;

-- name: transaction_commit
-- Sent in one pipeline with the acks: they are written and committed in one round trip.
COMMIT;

-- name: constraints_check_now
-- While a batch is bisected: after each handler run, in its savepoint, deferred
-- constraints (Django's foreign keys are DEFERRABLE INITIALLY DEFERRED) are checked
-- now, so a violation fails the events that caused it, not the COMMIT of all.
SET CONSTRAINTS ALL IMMEDIATE;

-- name: transaction_rollback
ROLLBACK;

-- ----- faults and maintenance

-- name: event_release_lost
-- After a reconnect: the events of the batch in flight when the connection broke are
-- still claimed by us (our name lives on in the new session, so no other drainer sees
-- them abandoned). Make them claimable now, locked_by kept: their run never finished,
-- so each runs alone next time, in case one of them broke the connection.
UPDATE outbox_event
SET available_at = now(),
    locked_until = NULL
WHERE id = ANY(%(ids)s::bigint[])
  AND status = 'pending'
  AND locked_by = %(me)s
RETURNING id;

-- name: drainer_rescue_dead
-- Drainers that stopped without saying so (killed, or silent past the expiry): forget
-- them, and make the events of unordered topics they held claimable now instead of at
-- the end of their lease (the owner of a bucket takes its events back by itself).
-- DELETE ... RETURNING: of several drainers that see one die, one does the rescue.
WITH dead AS (
    DELETE FROM outbox_drainer AS d
    WHERE d.name <> %(me)s
      AND (d.seen_at < now() - make_interval(secs => %(expiry)s)
           OR (d.direct AND d.name NOT IN (
               SELECT a.application_name FROM pg_stat_activity AS a
               WHERE a.application_name IS NOT NULL)))
    RETURNING d.name
)
UPDATE outbox_event AS e
SET available_at = now(),
    locked_until = now()
FROM dead
WHERE e.status = 'pending'
  AND e.locked_by = dead.name
  AND e.available_at > now()
RETURNING e.id, e.locked_by;

-- name: event_count_pending_capped
-- Queue depth for the drainer's log line, read from the claim index and capped
-- so it costs at most %(cap)s index entries however deep the backlog is.
SELECT count(*) FROM (
    SELECT 1 FROM outbox_event WHERE status = 'pending' LIMIT %(cap)s
) AS capped;

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
       max_attempts_seen, estimated, oldest_available_at, lag_seconds
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

-- name: drainer_live_by_topic
-- The drainers alive now, as the drainers themselves count them (bucket_rebalance's
-- "live"): seen within %(expiry)s seconds and, if connected directly, with a session.
-- One row per topic they handle (how many handle it) and a NULL-topic row: how many
-- there are in all. outbox_status, the doctor and the metrics read it.
SELECT t.topic, count(DISTINCT d.name)
FROM outbox_drainer AS d
LEFT JOIN LATERAL unnest(d.topics) AS t(topic) ON true
WHERE d.seen_at > now() - make_interval(secs => %(expiry)s)
  AND (NOT d.direct OR d.name IN (
      SELECT a.application_name FROM pg_stat_activity AS a WHERE a.datname = current_database()))
GROUP BY GROUPING SETS ((t.topic), ())
HAVING t.topic IS NOT NULL OR GROUPING(t.topic) = 1;

-- name: event_pending_topics
-- The topics that have pending events: one index probe per topic (a loose index scan
-- of the claim index, whose first column is the topic), however many are pending.
WITH RECURSIVE topics AS (
    (SELECT topic FROM outbox_event WHERE status = 'pending' ORDER BY topic LIMIT 1)
    UNION ALL
    SELECT (SELECT e.topic FROM outbox_event AS e
            WHERE e.status = 'pending' AND e.topic > t.topic ORDER BY e.topic LIMIT 1)
    FROM topics AS t
    WHERE t.topic IS NOT NULL
)
SELECT topic FROM topics WHERE topic IS NOT NULL;

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

-- ===== tasks (outbox.tasks: a django.tasks backend) =====
-- A task is an event of topic 'tasks.<queue>' whose payload names the function and
-- its arguments (docs/tasks.md); its result row is outbox_task_result.

-- name: task_enqueue
-- Task.enqueue(): one event in the caller's transaction (rolled back, it never
-- runs), claimable at run_after (NULL: now); unordered (no bucket). The NOTIFY
-- wakes idle drainers at commit, like the trigger's, and obeys outbox.notify.
WITH event AS (
    INSERT INTO outbox_event (topic, key, payload, available_at)
    VALUES (%(topic)s, %(key)s, %(payload)s::jsonb, coalesce(%(run_after)s::timestamptz, now()))
    RETURNING id, created_at
)
SELECT e.id, e.created_at
FROM event AS e
LEFT JOIN LATERAL (
    SELECT pg_notify('outbox', %(topic)s)
    WHERE coalesce(current_setting('outbox.notify', true), 'on') <> 'off'
) AS notified ON true;

-- name: task_result_get
-- get_result(): the task's event (status, times, payload, lease) and what its ended
-- runs left. RUNNING = claimed under a live lease; a dead drainer's lease is ended by
-- the rescue, so a task never stays RUNNING after its drainer died.
SELECT e.topic, e.status, e.created_at, e.processed_at, e.attempts, e.payload::text, e.last_error,
       e.locked_by, (e.status = 'pending' AND e.locked_until > now()) IS TRUE AS running,
       r.started_at, r.last_attempted_at, r.finished_at, r.return_value::text, r.errors::text, r.worker_ids
FROM outbox_event AS e
LEFT JOIN outbox_task_result AS r ON r.event_id = e.id
WHERE e.id = %(id)s
  AND e.topic LIKE 'tasks.%%';

-- name: task_result_prior
-- Before a retry runs: what the task's earlier runs left (its TaskContext and the
-- task_started signal see them). Only for events past their first attempt.
SELECT event_id, started_at, errors::text, worker_ids
FROM outbox_task_result
WHERE event_id = ANY(%(ids)s::bigint[]);

-- name: task_result_record
-- Each run that ended, in the drainer's transaction (it commits with the ack): one
-- statement per batch over unnest. A later run appends its error and its drainer,
-- and keeps the first run's start.
INSERT INTO outbox_task_result AS r
    (event_id, started_at, last_attempted_at, finished_at, return_value, errors, worker_ids)
SELECT u.id, u.started, u.started, u.finished, u.value::jsonb, u.errors::jsonb, ARRAY[%(worker)s::text]
FROM unnest(%(ids)s::bigint[], %(started)s::timestamptz[], %(finished)s::timestamptz[], %(values)s::text[],
            %(errors)s::text[]) AS u(id, started, finished, value, errors)
ON CONFLICT (event_id) DO UPDATE
SET last_attempted_at = excluded.last_attempted_at,
    finished_at = excluded.finished_at,
    return_value = excluded.return_value,
    errors = r.errors || excluded.errors,
    worker_ids = r.worker_ids || excluded.worker_ids;
