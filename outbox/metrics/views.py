"""``/outbox/metrics``: the queue state for Prometheus, behind ``OUTBOX['METRICS']``.

Off by default (404, whoever asks). When on, a request is served if it comes from
a logged-in staff user with ``outbox.view_outboxevent``, or if it passes every
access rule that is configured: ``METRICS_ALLOWED_IPS`` (the client's address,
``REMOTE_ADDR``, is in one of the networks) and ``METRICS_BASIC_AUTH`` (HTTP basic
auth with that ``user:password``). With neither configured, only staff can read
it: the endpoint is never public unless a network such as ``0.0.0.0/0`` is allowed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from outbox.conf import OutboxSettings, get_settings

#: The realm a scraper is told to authenticate for.
REALM = "outbox metrics"


def _staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_staff and user.has_perm("outbox.view_outboxevent"))


def _address_allowed(request: HttpRequest, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def _credentials_match(request: HttpRequest, expected: str) -> bool:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def denied(request: HttpRequest, settings: OutboxSettings) -> HttpResponse | None:
    """Why this request may not read the metrics (a 401 or 403), or None if it may."""
    if _staff(request):
        return None
    ips, auth = settings.metrics_allowed_ips, settings.metrics_basic_auth
    if not ips and not auth:
        return HttpResponse(
            "Forbidden: set OUTBOX['METRICS_ALLOWED_IPS'] or OUTBOX['METRICS_BASIC_AUTH'] to let a scraper in.\n",
            status=403,
            content_type="text/plain",
        )
    if ips and not _address_allowed(request, ips):
        return HttpResponse(
            "Forbidden: this address may not read the metrics.\n", status=403, content_type="text/plain"
        )
    if auth and not _credentials_match(request, auth):
        response = HttpResponse("Unauthorized.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        return response
    return None


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    settings = get_settings()
    if not settings.metrics:
        raise Http404("OUTBOX['METRICS'] is off")
    refusal = denied(request, settings)
    if refusal is not None:
        return refusal
    from outbox.metrics.exposition import queue_state_for  # prometheus_client: only once asked for

    body, content_type = queue_state_for(request.META.get("HTTP_ACCEPT"))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
