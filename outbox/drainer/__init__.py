"""The drainer: claim a batch, run its handlers, ack, in a loop that survives faults.

``Drainer(config).run()`` until stopped, ``.drain()`` what is there now,
``.run_once()`` one cycle. A package of small modules, one concern each:

=============  ==============================================================
config         DrainerConfig and the loop's constants
store          every statement, one method each (the only module with cursors)
buckets        ownership of the order buckets, membership among the drainers
execute        the processing transaction: lock, handlers, bisect on error
ack            verdicts to acks: done, retry with backoff, failed; on_failed
session        connect, set up, tell faults from bugs, reconnect with backoff
wakeup         LISTEN, the stop pipe, the empty-claim rate limit
maintenance    the periodic duties (rebalance, rescue, retry, purge)
report         DrainResult and the per-batch log line
shutdown       the first and second SIGTERM/SIGINT
loop           Drainer: run, drain, run_once
=============  ==============================================================

docs/guarantees.md says what holds under which fault, and why.
"""

from outbox.drainer.config import ONCE_GIVE_UP_AFTER, DrainerConfig, make_identity
from outbox.drainer.loop import Drainer, drain
from outbox.drainer.report import DrainResult
from outbox.drainer.session import DatabaseUnavailable

__all__ = [
    "ONCE_GIVE_UP_AFTER",
    "DatabaseUnavailable",
    "DrainResult",
    "Drainer",
    "DrainerConfig",
    "drain",
    "make_identity",
]
