"""The fault suite: real drain_outbox processes, broken on purpose (run alone: -m fault)."""
