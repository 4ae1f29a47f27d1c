"""A test-only app whose outbox handler misbehaves on purpose (see apps.py)."""
