-- What a read-only monitoring role may see of the outbox, and nothing more: read by
-- migration outbox 0005_monitoring (in one transaction), granted by docs/monitoring.sql.
--
-- Such a role gets no table (not outbox_event, no auth_user, no django_session) and
-- no pg_read_all_stats: with it, pg_stat_activity shows every session's query text,
-- and Django binds parameters on the client, so that text holds literal values (the
-- admin's session keys among them). What monitoring needs of the server's sessions
-- (drainers connected, their state and age, lock waits, xmin age) comes through the
-- SECURITY DEFINER functions below, which run with the rights of their owner (the
-- role that migrates) and leave out the query text and every other database's
-- sessions. The views over outbox_event (outbox_failures, outbox_throughput and the
-- two below) read the table with their owner's rights, as every view does.
--
-- A SECURITY DEFINER function must not find its tables through the caller's
-- search_path: a caller could create a temporary table named like one of them (any
-- role may create temporary tables) and have the function read it. So the functions
-- take the search_path pinned here, for this transaction only (SET search_path FROM
-- CURRENT): the outbox's schema (where this file creates its objects too), then
-- pg_temp, searched last; pg_catalog, not named, is searched before both.
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);

-- outbox_stats reads outbox_event and its column statistics (pg_stats shows a role
-- only the columns it may read) through this function: with the owner's rights, a
-- monitoring role needs no privilege on the table itself.
ALTER FUNCTION outbox_stats_by_topic() SECURITY DEFINER SET search_path FROM CURRENT;
REVOKE ALL ON FUNCTION outbox_stats_by_topic(), outbox_stats_topic_shares() FROM PUBLIC;

-- outbox_throughput and outbox_throughput_day read outbox_event through this one. A
-- role that could read outbox_throughput before it did (a monitoring role set up by an
-- older docs/monitoring.sql) may call it, so that its dashboards keep working.
ALTER FUNCTION outbox_throughput_rows(interval, interval) SECURITY DEFINER SET search_path FROM CURRENT;
REVOKE ALL ON FUNCTION outbox_throughput_rows(interval, interval) FROM PUBLIC;
DO $$
DECLARE
    reader regrole;
BEGIN
    FOR reader IN
        SELECT DISTINCT a.grantee::regrole
        FROM pg_class AS c, aclexplode(c.relacl) AS a
        WHERE c.oid = 'outbox_throughput'::regclass
          AND a.privilege_type = 'SELECT'
          AND a.grantee NOT IN (0, c.relowner)  -- not PUBLIC, not the owner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION outbox_throughput_rows(interval, interval) TO %s', reader);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION outbox_drainer_sessions()
RETURNS TABLE (
    drainer text,
    sessions bigint,
    connected_since timestamptz,
    states text,
    transaction_age_seconds double precision,
    idle_in_transaction_seconds double precision,
    waiting_for_lock boolean,
    xmin_age integer,
    from_hosts text
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    -- Drainers name their sessions outbox:<host>:<pid>:<random> (a working one and a
    -- LISTENing one). Sessions of this database only; no query text.
    SELECT a.application_name,
           count(*),
           min(a.backend_start),
           string_agg(DISTINCT a.state, ', '),
           max(extract(epoch FROM now() - a.xact_start))::double precision,
           max(extract(epoch FROM now() - a.state_change))
               FILTER (WHERE a.state LIKE 'idle in transaction%')::double precision,
           coalesce(bool_or(a.wait_event_type = 'Lock'), false),
           max(age(a.backend_xmin)),
           string_agg(DISTINCT coalesce(host(a.client_addr), 'local'), ', ')
    FROM pg_stat_activity AS a
    WHERE a.datname = current_database()
      AND a.application_name LIKE 'outbox:%'
    GROUP BY a.application_name
    ORDER BY a.application_name
$$;

REVOKE ALL ON FUNCTION outbox_drainer_sessions() FROM PUBLIC;

CREATE OR REPLACE VIEW outbox_drainers AS
SELECT drainer, sessions, connected_since, states, transaction_age_seconds, idle_in_transaction_seconds,
       waiting_for_lock, xmin_age, from_hosts
FROM outbox_drainer_sessions();

COMMENT ON VIEW outbox_drainers IS
'Drainers connected to this database now, one row each (sessions: a working one and a LISTENing one): '
'connected_since, states, transaction_age_seconds and idle_in_transaction_seconds of the oldest, '
'waiting_for_lock, xmin_age, from_hosts. No query text. Sees what its owner sees: sessions of its own '
'role, all sessions with pg_read_all_stats or as a superuser.';

CREATE OR REPLACE FUNCTION outbox_session_rows()
RETURNS TABLE (
    pid integer,
    application_name text,
    usename text,
    backend_type text,
    state text,
    transaction_age_seconds double precision,
    state_age_seconds double precision,
    xmin_age integer,
    wait_event_type text,
    wait_event text,
    blocked_by integer[]
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    -- What holds dead row versions back or waits: sessions of this database with a
    -- transaction or a snapshot open (backend_xmin), or waiting for a lock, oldest
    -- transaction first. pg_blocking_pids() only for those that wait (it reads the
    -- lock manager). No query text; not the caller's own session.
    SELECT a.pid, a.application_name, a.usename::text, a.backend_type, a.state,
           extract(epoch FROM now() - a.xact_start)::double precision,
           extract(epoch FROM now() - a.state_change)::double precision,
           age(a.backend_xmin),
           a.wait_event_type, a.wait_event,
           CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END
    FROM pg_stat_activity AS a
    WHERE a.datname = current_database()
      AND a.pid <> pg_backend_pid()
      AND (a.xact_start IS NOT NULL OR a.backend_xmin IS NOT NULL OR a.wait_event_type = 'Lock')
    ORDER BY a.xact_start NULLS LAST, a.pid
$$;

REVOKE ALL ON FUNCTION outbox_session_rows() FROM PUBLIC;

CREATE OR REPLACE VIEW outbox_sessions AS
SELECT pid, application_name, usename, backend_type, state, transaction_age_seconds, state_age_seconds,
       xmin_age, wait_event_type, wait_event, blocked_by
FROM outbox_session_rows();

COMMENT ON VIEW outbox_sessions IS
'Sessions of this database that hold a transaction or snapshot open, or wait for a lock, oldest '
'transaction first: pid, application_name, usename, backend_type, state, transaction_age_seconds, '
'state_age_seconds, xmin_age, wait_event_type, wait_event, blocked_by (pids). No query text. Sees what '
'its owner sees (its own role''s sessions; all with pg_read_all_stats or as a superuser).';

CREATE OR REPLACE VIEW outbox_leases AS
-- Pending events under a lease (read through the claim index). holder_connected: a session
-- named after the holder is connected (application_name is visible to every role);
-- a live lease whose holder is gone is freed by a running drainer's rescue.
SELECT e.id, e.topic, e.key, e.attempts, e.locked_by, e.locked_until,
       (e.locked_until IS NULL OR e.locked_until <= now()) AS expired,
       e.locked_by IN (SELECT a.application_name FROM pg_stat_activity AS a WHERE a.application_name IS NOT NULL)
           AS holder_connected
FROM outbox_event AS e
WHERE e.status = 'pending'
  AND e.locked_by IS NOT NULL;

COMMENT ON VIEW outbox_leases IS
'Pending events under a lease: id, topic, key, attempts, locked_by, locked_until, expired (claimable '
'again), holder_connected (a session of the holder is connected).';

CREATE OR REPLACE VIEW outbox_retention AS
-- The first entry of outbox_event_done_idx: how far behind the retention purge is.
SELECT min(processed_at) AS oldest_done_at,
       extract(epoch FROM now() - min(processed_at))::double precision AS oldest_done_age_seconds
FROM outbox_event
WHERE status = 'done';

COMMENT ON VIEW outbox_retention IS
'The oldest done event''s processed_at and its age in seconds (NULL: no done event).';
