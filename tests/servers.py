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


class PgBouncer:
    """A real PgBouncer (Debian's ``pgbouncer``) on a free local port, in front of one server.

    Transaction pooling by default: a client holds a server connection for one
    transaction at a time, which is what breaks LISTEN and session settings. Runs as
    a system user of the server when started by root (PgBouncer refuses root), with
    its configuration, log and pid file in a directory of its own; ``close()`` stops it.
    """

    def __init__(self, *, host: str, port: int, pool_mode: str = "transaction", pool_size: int = 8) -> None:
        import os
        import shutil
        import subprocess
        import tempfile
        from pathlib import Path

        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("no pgbouncer binary: apt-get install pgbouncer (.ci/run installs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-pgbouncer-"))
        self.dir.chmod(0o777)
        self.port = free_port()
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 200\n"
            "admin_users = postgres\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        for path in self.dir.iterdir():
            path.chmod(0o666)
        command = [binary, "-d"]
        if os.geteuid() == 0:
            command += ["-u", self._run_as(host)]
        subprocess.run([*command, str(ini)], check=True, capture_output=True, timeout=30)
        self._wait_listening()

    @staticmethod
    def _run_as(host: str) -> str:
        """Who PgBouncer runs as under root: the owner of the server's socket directory
        when it connects through one (the embedded server's is private to its user),
        else ``postgres``."""
        import os
        import pwd

        if host.startswith("/"):
            return pwd.getpwuid(os.stat(host).st_uid).pw_name
        return pwd.getpwnam("postgres").pw_name  # KeyError: no such user to run it as

    def _wait_listening(self) -> None:
        import socket
        import time

        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not listen on {self.port}: {self.log()}")
            time.sleep(0.05)

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def admin(self, command: str) -> list[tuple[object, ...]]:
        """A command of PgBouncer's admin console (SHOW POOLS, SHOW CLIENTS...)."""
        import psycopg

        with psycopg.connect(self.url("pgbouncer"), autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.cursor()
            cursor.execute(command)  # the admin console's own language, no parameters
            return list(cursor.fetchall())

    def close(self) -> None:
        import os
        import shutil
        import signal

        pidfile = self.dir / "pgbouncer.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
