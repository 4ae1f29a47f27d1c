"""A second domain for the tests: stock levels on their own outbox topic.

It exists to prove the extension point the README documents: a new topic is a
model with ``outbox_trigger`` in ``Meta.triggers``, its migration, and a handler
registered in ``AppConfig.ready()``; nothing under ``outbox/`` changes.
"""
