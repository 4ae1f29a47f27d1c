"""The order buckets this drainer owns, and its membership among the running drainers.

Every REBALANCE_INTERVAL the drainer runs one statement (``bucket_rebalance``): it
says it is alive, keeps up to its fair share of each ordered topic's buckets, gives
back the rest and takes free ones. It then claims ordered events only from the
buckets it owns, so the events of one key are never held by two drainers at once.
See docs/guarantees.md#per-key-order.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence

from outbox.conf import BUCKETS
from outbox.drainer.store import Store
from outbox.signals import buckets_changed

logger = logging.getLogger(__name__)


def mask_hex(buckets: frozenset[int]) -> str:
    """Buckets as the hex of a bit string: bit n (get_bit numbering) is bucket n."""
    mask = bytearray(BUCKETS // 8)
    for bucket in buckets:
        mask[bucket // 8] |= 1 << (bucket % 8)
    return mask.hex()


class Buckets:
    """Ownership of the order buckets of the ordered topics one drainer handles."""

    def __init__(
        self,
        store: Store,
        *,
        handled: Sequence[str],
        ordered: Sequence[str],
        expiry: float,
        direct: bool = True,
        sender: object = None,
    ) -> None:
        self.store = store
        self.handled = list(handled)
        self.ordered = list(ordered)
        self.expiry = expiry
        self.direct = direct
        self._sender = sender
        self.owned: dict[str, frozenset[int]] = {topic: frozenset() for topic in self.ordered}
        self._masks: dict[str, str] = {}
        self._host = socket.gethostname()

    def prepare(self) -> None:
        """Make the bucket rows of the ordered topics (once, at start-up)."""
        if self.ordered:
            self.store.ensure_bucket_rows(self.ordered, BUCKETS)

    def rebalance(self) -> bool:
        """Heartbeat and rebalance now. Returns whether the buckets owned changed."""
        owned = self.store.rebalance(
            handled=self.handled,
            ordered=self.ordered,
            host=self._host,
            pid=os.getpid(),
            direct=self.direct,
            expiry=self.expiry,
            buckets=BUCKETS,
        )
        if owned == self.owned:
            return False
        for topic in self.ordered:
            before, after = self.owned.get(topic, frozenset()), owned.get(topic, frozenset())
            if before != after:
                logger.info(
                    "drainer=%s topic=%s buckets=%d gained=%d released=%d",
                    self.store.identity,
                    topic,
                    len(after),
                    len(after - before),
                    len(before - after),
                )
        self.owned = owned
        self._masks = {topic: mask_hex(numbers) for topic, numbers in owned.items() if numbers}
        buckets_changed.send(sender=type(self._sender), drainer=self._sender, owned=owned)
        return True

    def masks(self) -> Mapping[str, str]:
        """Ordered topics this drainer owns buckets of, each with its mask."""
        return self._masks

    def unordered(self) -> list[str]:
        return [topic for topic in self.handled if topic not in self.ordered]

    def leave(self) -> None:
        """Give every bucket back and leave the membership (a graceful stop)."""
        self.store.leave()
        self.owned = {topic: frozenset() for topic in self.ordered}
        self._masks = {}
