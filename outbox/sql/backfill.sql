-- outbox_backfill (outbox/backfill.py): events for rows that already exist.
--
-- The model's table, primary key and key column are identifiers filled in with
-- psycopg.sql.Identifier ({table}, {pk}, {key}); {selection}, {chosen} and
-- {events_insert} are SQL that Django compiled from the caller's queryset (values as
-- parameters) and the trigger's own INSERT (outbox/triggers.py). Values are %s
-- parameters, positional because Django's compiled SQL is.

-- name: backfill_drop
DROP TABLE IF EXISTS outbox_backfill_selection;

-- name: backfill_select
-- Step 1: the rows to enqueue, numbered in the order asked for (for pricing, crawl
-- order: the order the old queue had them, so history is written oldest first).
-- One sort, kept in a temporary table of this session, so that each chunk after it
-- is an index range instead of a re-scan. {selection} returns (outbox_n, outbox_pk).
CREATE TEMPORARY TABLE outbox_backfill_selection AS {selection};

-- name: backfill_index
ALTER TABLE outbox_backfill_selection ADD PRIMARY KEY (outbox_n);

-- name: backfill_lock
-- Taken in each chunk's transaction before its insert: two backfills of one topic
-- take turns, so the second one's NOT EXISTS (a new snapshot, the next statement)
-- sees the events the first one committed. Released at commit.
SELECT pg_advisory_xact_lock(hashtext('outbox.backfill:' || %s));

-- name: backfill_chunk
-- Step 2, once per chunk, in its own short transaction. {chosen} is the caller's
-- queryset again, limited to the chunk's rows (n in (after, after + chunk]): a row
-- that no longer matches (a drainer processed it since) is left alone. Rows with a
-- pending event of this topic already get none (outbox_event_key_idx). The rest
-- become outbox_new_rows, the name the trigger's INSERT reads, in selection order.
-- Returns how many of the chunk's rows still matched and how many events were written.
WITH chosen AS (
    {chosen}
),
outbox_new_rows AS (
    SELECT t.*
    FROM outbox_backfill_selection AS s
    JOIN {table} AS t ON t.{pk} = s.outbox_pk
    WHERE s.outbox_pk IN (SELECT * FROM chosen)
      AND NOT EXISTS (
          SELECT 1
          FROM outbox_event AS e
          WHERE e.key = t.{key}::text
            AND e.topic = %s
            AND e.status = 'pending'
      )
    ORDER BY s.outbox_n
),
enqueued AS (
    {events_insert}
    RETURNING 1
)
SELECT (SELECT count(*) FROM chosen), (SELECT count(*) FROM enqueued);

-- name: backfill_chunk_rows
-- The chunk's part of the selection, for {chosen}: selection numbers (%s, %s].
SELECT outbox_pk FROM outbox_backfill_selection WHERE outbox_n > %s AND outbox_n <= %s

-- name: backfill_notify
-- Wake idle drainers once per chunk that wrote events, like the trigger's NOTIFY
-- (and, like it, not when the outbox.notify setting is off).
SELECT pg_notify(%s, %s)
WHERE coalesce(current_setting('outbox.notify', true), 'on') <> 'off';
