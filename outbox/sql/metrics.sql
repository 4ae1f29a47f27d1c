-- What /outbox/metrics reads at scrape time, besides the statements it shares with
-- outbox_status and outbox_doctor (stats_by_topic_status, doctor_table_health,
-- doctor_orphaned_leases, doctor_oldest_done, doctor_trigger_state in queries.sql).
-- Each must stay cheap on a table of tens of millions of rows: catalog reads, the
-- small membership table, or partial indexes over the unfinished events only
-- (bench/metrics_bench.py measures a scrape on 10,000,000 events).

-- name: metrics_lag_by_topic
-- Per topic: how long the oldest event claimable now (pending, available_at <= now():
-- not leased, not waiting out a backoff) has been claimable; NULL when none is. Reads
-- the pending events of each topic through the claim index (outbox_event_claim_idx).
SELECT t.topic, extract(epoch FROM now() - o.oldest)::double precision
FROM unnest(%(topics)s::text[]) AS t(topic)
CROSS JOIN LATERAL (
    SELECT min(e.available_at) AS oldest
    FROM outbox_event AS e
    WHERE e.status = 'pending'
      AND e.topic = t.topic
      AND e.available_at <= now()
) AS o
ORDER BY t.topic;

-- name: metrics_xmin_horizon
-- What holds back VACUUM's horizon in this database: the largest age (in transactions)
-- of its other sessions' snapshots (backend_xmin) or own transaction ids (backend_xid:
-- an idle transaction that wrote holds the horizon with no snapshot), of its prepared
-- transactions and of the replication slots; and the age in seconds of its oldest open
-- transaction (ours excluded).
SELECT greatest(
           (SELECT max(greatest(age(a.backend_xmin), age(a.backend_xid))) FROM pg_stat_activity AS a
            WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()),
           (SELECT max(age(p.transaction)) FROM pg_prepared_xacts AS p WHERE p.database = current_database()),
           (SELECT max(age(s.xmin)) FROM pg_replication_slots AS s WHERE s.xmin IS NOT NULL),
           0
       ),
       -- clock_timestamp(), not now(): a transaction begun after ours is not in the future.
       greatest(coalesce((SELECT max(extract(epoch FROM clock_timestamp() - a.xact_start)) FROM pg_stat_activity AS a
                          WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()), 0), 0)::double precision;

-- ----- the admin's throughput chart (outbox.chart)

-- name: chart_last_hour
-- Done and failed per minute and the wait of the last event done, the last 60 minutes.
SELECT minute, done, failed, wait_seconds FROM outbox_throughput;

-- name: chart_last_day
-- The same per 15 minutes over 24 hours: counts the day's done events from their index.
SELECT period_start, done, failed, wait_seconds FROM outbox_throughput_day;
