"""A primary, its replica and three Redis Sentinels that watch them, for tests that fail
the primary over: beside, not instead of, the single Redis the other tests use.

Each process is a redis-server of Debian's package (``--sentinel`` for the Sentinels),
on free ports, in a folder of the test's own, plain or TLS only, with or without
passwords (the Sentinels' may differ from the data nodes'). The data nodes keep
nothing on disk: a killed primary comes back empty, and the Sentinels make it the new
primary's replica.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import redis

from harness.isolation import free_port
from harness.processes import wait_for
from harness.redis_servers import Certificates

SERVICE = "tracker"
"""The name the Sentinels know the primary by (``sentinel monitor``)."""
DOWN_AFTER_MS = 1000
"""How long a primary may not answer before a Sentinel holds it down: Redis's default is
30 s, too long for a test; a production figure is a few seconds."""


def unstartable() -> str | None:
    """Why the processes cannot be started here, or None when they can."""
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH: deploy/local/redis.sh start installs it"
    return None


@dataclass(frozen=True, slots=True)
class Access:
    """How the processes are reached: TLS only (``tls``), and the passwords asked."""

    tls: Certificates | None = None
    password: str | None = None
    """The data nodes' (``requirepass``), which the Sentinels are given too."""
    sentinel_password: str | None = None
    """The Sentinels' own (``requirepass`` in their file)."""

    def listening(self, port: int) -> list[str]:
        if self.tls is None:
            return ["--port", str(port)]
        return ["--port", "0", "--tls-port", str(port), "--tls-replication", "yes",
                *self.tls.server_options()]  # fmt: skip

    def client(self, port: int, password: str | None) -> redis.Redis:
        trust: dict[str, Any] = {}
        if self.tls is not None:
            trust = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            password=password,
            socket_timeout=2,
            decode_responses=True,
            **trust,
        )


@dataclass(slots=True)
class _Server:
    """One redis-server, data node or Sentinel, that may be killed and started again."""

    folder: Path
    port: int
    options: list[str]
    client: redis.Redis
    process: subprocess.Popen[bytes] | None = None

    def start(self, access: Access) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        where = ["--bind", "127.0.0.1", *access.listening(self.port), "--dir", str(self.folder)]
        with (self.folder / "redis.log").open("ab") as output:
            self.process = subprocess.Popen(
                ["redis-server", *self.options, *where], stdout=output, stderr=subprocess.STDOUT
            )
        try:
            wait_for(self.client.ping, 30, f"redis-server on {self.port}")
        except TimeoutError as exc:
            log = (self.folder / "redis.log").read_text()[-3000:]
            raise TimeoutError(f"{exc}; its log:\n{log}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(30)
        self.process = None
        self.client.close()


@dataclass(slots=True)
class Sentinels:
    """Two data nodes and the Sentinels that watch them; :attr:`url` is tracker's."""

    access: Access
    nodes: dict[int, _Server]
    sentinels: list[_Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        access = self.access
        login = f":{quote(access.password, safe='')}@" if access.password else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query: dict[str, str] = {}
        if access.tls is not None:
            query["ssl_ca_certs"] = str(access.tls.ca)
        if access.sentinel_password != access.password:
            query["sentinel_password"] = access.sentinel_password or ""
        scheme = "rediss+sentinel" if access.tls else "redis+sentinel"
        return f"{scheme}://{login}{hosts}/{SERVICE}/0" + f"?{urlencode(query)}" * bool(query)

    def primary(self) -> int:
        """The port of the node the Sentinels name primary now (the first that answers)."""
        for sentinel in self.sentinels:
            try:
                address = sentinel.client.sentinel_get_master_addr_by_name(SERVICE)
                return int(cast(tuple[str, int], address)[1])
            except redis.RedisError:
                continue
        raise ConnectionError("no Sentinel answered")

    def pid(self, port: int) -> int:
        """The process id of the data node at ``port``."""
        process = self.nodes[port].process
        assert process is not None, f"node {port} is not running"
        return process.pid

    def kill(self, port: int) -> None:
        """SIGKILL the data node at ``port``: a crash, nothing passed on after it."""
        self.nodes[port].stop(signal.SIGKILL)

    def start(self, port: int) -> None:
        """Start the data node at ``port`` again; return once it is a replica in sync
        (the Sentinels tell a primary that was replaced whose replica it is now)."""
        self.nodes[port].start(self.access)
        wait_for(lambda: self.in_sync(port), 60, f"node {port} a replica in sync")

    def in_sync(self, port: int) -> bool:
        shown = self.nodes[port].client.info("replication")
        return bool(shown["role"] == "slave" and shown.get("master_link_status") == "up")

    def failed_over(self, away: int, timeout: float = 30) -> int:
        """Wait until the Sentinels name a primary other than ``away``, which answers as
        one; its port."""

        def promoted() -> int | None:
            port = self.primary()
            if port == away:
                return None
            return port if self.nodes[port].client.role()[0] == "master" else None

        return wait_for(promoted, timeout, f"a primary other than {away}")


@contextmanager
def running(
    folder: Path, access: Access | None = None, down_after_ms: int = DOWN_AFTER_MS
) -> Iterator[Sentinels]:
    """A primary with a replica in sync, and three Sentinels (quorum two) that know both
    and hold a primary down once it has not answered for ``down_after_ms``, in
    ``folder``; stopped at the end."""
    access = access or Access()
    primary, replica = free_port(), free_port()
    data = ["--save", "", "--appendonly", "no"]
    if access.password:
        data += ["--requirepass", access.password, "--masterauth", access.password]

    def node(name: str, port: int, *options: str) -> _Server:
        return _Server(folder / name, port, [*data, *options], access.client(port, access.password))

    nodes = {
        primary: node("primary", primary),
        replica: node("replica", replica, "--replicaof", "127.0.0.1", str(primary)),
    }
    setup = Sentinels(access, nodes)
    try:
        for server in nodes.values():
            server.start(access)
        wait_for(lambda: setup.in_sync(replica), 60, "the replica in sync")
        for number in range(3):
            own = folder / f"sentinel{number}"
            own.mkdir(parents=True)
            lines = [
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2",
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
                f"sentinel failover-timeout {SERVICE} 10000",
            ]
            if access.password:
                lines.append(f"sentinel auth-pass {SERVICE} {access.password}")
            if access.sentinel_password:
                lines.append(f"requirepass {access.sentinel_password}")
            conf = own / "sentinel.conf"  # a Sentinel rewrites its file: one each
            conf.write_text("\n".join(lines) + "\n")
            port = free_port()
            client = access.client(port, access.sentinel_password)
            setup.sentinels.append(
                sentinel := _Server(own, port, [str(conf), "--sentinel"], client)
            )
            sentinel.start(access)

        def knows_all() -> bool:
            seen = cast(dict[str, Any], setup.sentinels[-1].client.sentinel_master(SERVICE))
            return int(seen["num-slaves"]) == 1 and int(seen["num-other-sentinels"]) == 2

        wait_for(knows_all, 60, "every Sentinel knowing the replica and the others")
        yield setup
    finally:
        for server in [*setup.sentinels, *nodes.values()]:
            server.stop()
