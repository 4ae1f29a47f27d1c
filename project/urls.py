from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # /outbox/metrics: Prometheus metrics, off unless OUTBOX["METRICS"] is on (docs/metrics.md).
    path("outbox/", include("outbox.urls")),
]
