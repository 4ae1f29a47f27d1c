"""The operators' API, one import: ``outbox.services.status()``, ``retry()``, ``purge()``,
``doctor()``... The admin's actions, the ``outbox_*`` commands and the metrics call
these; they live in ``outbox.operations`` (status and the writes) and
``outbox.doctor`` (the health check) and ``outbox.triggers`` (the triggers' installed state).
"""

from outbox.doctor import (
    Check,
    CheckState,
    DoctorLimits,
    DoctorReport,
    doctor,
)
from outbox.operations import (
    CLAIM_INDEX,
    DEFAULT_CHUNK,
    PURGEABLE,
    SMALL_TABLE_PAGES,
    OutboxStatus,
    TopicStats,
    delete_done,
    format_age,
    mark_failed,
    purge,
    retry,
    status,
)
from outbox.triggers import TriggerState, trigger_states

__all__ = [
    "CLAIM_INDEX",
    "DEFAULT_CHUNK",
    "PURGEABLE",
    "SMALL_TABLE_PAGES",
    "Check",
    "CheckState",
    "DoctorLimits",
    "DoctorReport",
    "OutboxStatus",
    "TopicStats",
    "TriggerState",
    "delete_done",
    "doctor",
    "format_age",
    "mark_failed",
    "purge",
    "retry",
    "status",
    "trigger_states",
]
