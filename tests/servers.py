"""Local servers the tests start in processes of their own: ports and readiness."""

from __future__ import annotations

import socket
import urllib.request


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    """Does ``url`` answer 200 now? (Any error, refused connection included, is a no.)"""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local test servers only)
            return response.status == 200
    except OSError:
        return False
