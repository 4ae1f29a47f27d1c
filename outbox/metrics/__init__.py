"""Prometheus metrics of the outbox (needs ``prometheus_client``).

* ``outbox.metrics.queue``: the queue's state, read from the database at scrape
  time, served by the Django view ``outbox.metrics.views.metrics`` (``/outbox/metrics``,
  behind ``OUTBOX['METRICS']``);
* ``outbox.metrics.drainer``: what each drainer did, fed by its signals and served
  by ``drain_outbox --metrics-port PORT``.

Nothing here is imported unless one of them is used. docs/metrics.md lists every
metric, the scrape configuration, the dashboard and the alerting rules.
"""
