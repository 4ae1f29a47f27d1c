"""What a drainer tells whoever listens: tests, metrics, your own hooks.

Django signals, sent by the drainer at fixed points of its loop; with no receiver
connected a send costs a dictionary lookup. Every signal carries ``drainer`` (the
``Drainer``). Receivers run in the drainer's thread, at that point of the loop:
``batch_handled`` inside the processing transaction (after the handlers returned,
before the acks and the COMMIT), the others outside any transaction. A receiver
that raises breaks the drainer like a bug would: keep them small.
"""

from __future__ import annotations

from django.dispatch import Signal

#: The drainer is set up and about to claim (``topics``, ``ordered``).
drainer_started = Signal()
#: The drainer stopped (``result``: its DrainResult).
drainer_stopped = Signal()
#: The order buckets this drainer owns changed (``owned``: topic -> frozenset of buckets).
buckets_changed = Signal()
#: A claim committed (``events``: the claimed Events, suspects included; ``suspects``: their ids).
batch_claimed = Signal()
#: The handlers of a batch returned; its acks and COMMIT are next (``events``).
batch_handled = Signal()
#: A topic's handler is about to run on ``events`` (``topic``), in the processing transaction.
handler_started = Signal()
#: That handler returned (``outcomes``, ``failed``: event id -> error) or raised (``error``).
handler_finished = Signal()
#: A processing transaction committed (``report``: its BatchReport).
batch_acked = Signal()
#: The connection was lost and made again (``released``: events handed back as suspects).
reconnected = Signal()
