"""The outbox's own URLs: ``path("outbox/", include("outbox.urls"))``."""

from django.urls import path

from outbox.metrics.views import metrics

app_name = "outbox"

urlpatterns = [
    path("metrics", metrics, name="metrics"),
]
