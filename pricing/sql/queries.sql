-- Every SQL statement of the pricing handler, in one file (loaded by outbox.sql.Queries).
-- The handler runs inside the drainer's transaction, after the drainer has taken
-- a transaction-level advisory lock on every product in the batch.

-- name: crawl_result_fetch_batch
-- The results behind a batch of events, with whether each already has history.
SELECT cr.id, cr.product_id, cr.source, cr.price, cr.currency, cr.confidence,
       cr.crawled_at, (ph.id IS NOT NULL) AS has_history
FROM pricing_crawlresult AS cr
LEFT JOIN pricing_pricehistory AS ph ON ph.crawl_result_id = cr.id
WHERE cr.id = ANY(%(ids)s::uuid[]);

-- name: price_history_latest_by_product
-- The latest recorded price of each product: one index probe per product
-- (pricing_ph_product_latest), however long each product's history is.
SELECT p.product_id, h.price, h.currency, h.crawled_at
FROM unnest(%(product_ids)s::bigint[]) AS p(product_id)
CROSS JOIN LATERAL (
    SELECT price, currency, crawled_at
    FROM pricing_pricehistory
    WHERE product_id = p.product_id
    ORDER BY crawled_at DESC, id DESC
    LIMIT 1
) AS h;

-- name: price_history_insert_batch
-- All history rows of a batch in one statement. ON CONFLICT: crawl_result_id is
-- the idempotency key; the handler has already checked under the product lock,
-- so a conflict here means a bug elsewhere, and RETURNING lets the caller see it.
INSERT INTO pricing_pricehistory (product_id, price, currency, source, crawled_at, recorded_at, crawl_result_id)
SELECT r.product_id, r.price, r.currency, r.source, r.crawled_at, now(), r.crawl_result_id
FROM unnest(
    %(product_ids)s::bigint[], %(prices)s::numeric[], %(currencies)s::text[],
    %(sources)s::text[], %(crawled_ats)s::timestamptz[], %(crawl_result_ids)s::uuid[]
) AS r(product_id, price, currency, source, crawled_at, crawl_result_id)
ON CONFLICT (crawl_result_id) DO NOTHING
RETURNING crawl_result_id;

-- name: crawl_result_mark_batch
-- Every outcome of a batch in one statement.
UPDATE pricing_crawlresult AS cr
SET history_record_status = r.status,
    history_record_reason = r.reason,
    history_recorded = cr.history_recorded OR r.recorded,
    history_recorded_at = CASE WHEN r.recorded THEN now() ELSE cr.history_recorded_at END
FROM unnest(%(ids)s::uuid[], %(statuses)s::text[], %(reasons)s::text[], %(recorded)s::bool[])
    AS r(id, status, reason, recorded)
WHERE cr.id = r.id;

-- name: crawl_result_mark_failed
-- The outbox gave up on these results' events: say so on the results.
UPDATE pricing_crawlresult
SET history_record_status = 'failed',
    history_record_reason = %(reason)s
WHERE id = ANY(%(ids)s::uuid[]);
