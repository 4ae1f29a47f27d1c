"""The bench claims with outbox.drainer.store.claim_params's parameters, without Django."""

from __future__ import annotations

from bench import db
from outbox.conf import BUCKETS
from outbox.drainer.buckets import mask_hex
from outbox.drainer.store import claim_params
from outbox.handlers import MAX_PAYLOAD_BYTES


def test_bench_claim_parameters_are_the_drainers() -> None:
    everything = mask_hex(frozenset(range(BUCKETS)))
    drainer = claim_params("me", ordered={"t": everything}, unordered=[], batch=7, lease=60.0)
    assert db.claim_all_buckets("me", "t", BUCKETS, 7) == drainer
    assert db.MAX_PAYLOAD_BYTES == MAX_PAYLOAD_BYTES
