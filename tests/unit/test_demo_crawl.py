"""The demo's crawl generator: one seed, one crawl, with the mix the README promises."""

from __future__ import annotations

import datetime as dt

from pricing import demo
from pricing.auto_record import AutoRecordConfig

END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def crawl(seed: int, results: int = 5000, products: int = 50) -> tuple[demo.CrawlPlan, list[tuple[object, ...]]]:
    generator = demo.CrawlGenerator(
        results=results, product_ids=list(range(products)), seed=seed, config=AutoRecordConfig(), end=END
    )
    rows = []
    for chunk in generator.chunks(size=1000):
        rows += list(zip(chunk.product_ids, chunk.sources, chunk.prices, chunk.confidences, strict=True))
    return generator.plan, rows


def test_a_seed_replays_the_same_crawl_and_another_seed_does_not() -> None:
    plan_a, rows_a = crawl(7)
    plan_b, rows_b = crawl(7)
    plan_c, rows_c = crawl(8)
    assert rows_a == rows_b and plan_a == plan_b
    assert rows_a != rows_c


def test_the_mix_has_every_kind_of_result() -> None:
    plan, rows = crawl(1, results=20_000, products=200)
    assert plan.written == 20_000 and plan.deleted == demo.doomed_count(20_000) == 10
    kept = plan.written - plan.deleted
    assert sum(plan.criteria.values()) == kept
    # Mostly html_ml above the threshold; some of each other kind.
    assert 0.65 < plan.criteria["eligible"] / kept < 0.8, plan.criteria
    assert 0.05 < plan.criteria["low_confidence"] / kept < 0.15, plan.criteria
    assert 0.1 < plan.criteria["source_not_allowed"] / kept < 0.2, plan.criteria
    assert 0 < plan.criteria["invalid_price"] / kept < 0.02, plan.criteria
    assert plan.repeats > plan.criteria["eligible"] / 2, "unchanged prices should be common"
    assert {source for _, source, _, _ in rows} == {demo.TRUSTED_SOURCE, *demo.OTHER_SOURCES}


def test_crawled_at_grows_with_the_crawl_and_ends_at_the_end() -> None:
    generator = demo.CrawlGenerator(results=300, product_ids=[1, 2], seed=3, config=AutoRecordConfig(), end=END)
    times = [t for chunk in generator.chunks(size=100) for t in chunk.crawled_ats]
    assert times == sorted(times) and len(set(times)) == 300
    assert times[-1] == END and times[0] > END - dt.timedelta(hours=1)
