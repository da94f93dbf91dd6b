"""redis-server processes a test starts for itself, beside the session's Redis: for what
the shared one must not be given (a memory limit, a hardened command table, TLS)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from harness.isolation import free_port
from harness.processes import wait_for


@dataclass(frozen=True, slots=True)
class Certificates:
    """A certificate authority of a test's own, and a server certificate it signed."""

    ca: Path
    cert: Path
    key: Path

    def server_options(self) -> list[str]:
        """redis-server's options to serve TLS with them (clients show no certificate)."""
        return [
            *("--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key)),
            *("--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no"),
        ]


def certificates(folder: Path) -> Certificates:
    """A new authority, and a certificate it signed for 127.0.0.1, made by openssl."""
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, request = folder / "server.pem", folder / "server.key", folder / "server.csr"
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    named = ["-addext", "subjectAltName=IP:127.0.0.1"]
    signed = ["-CAcreateserial", "-copy_extensions", "copy", "-days", "2"]
    for command in (
        ["req", "-x509", *curve, "-keyout", ca_key, "-out", ca, "-subj", "/CN=tracker tests CA"],
        ["req", *curve, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1", *named],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, *signed, "-out", cert],
    ):
        subprocess.run(["openssl", *map(str, command)], capture_output=True, check=True)
    return Certificates(ca, cert, key)


@contextmanager
def redis_server(
    folder: Path, *options: str, tls: Certificates | None = None
) -> Iterator[tuple[str, int]]:
    """A redis-server no other test uses, with Redis's defaults (noeviction, no limit)
    but for ``options``: its URL and port. With ``tls``, it serves TLS only, and the
    URL (``rediss://``) trusts ``tls``'s authority."""
    port = free_port()
    where = ["--bind", "127.0.0.1", "--save", "", "--dir", str(folder)]
    if tls:
        where += ["--port", "0", "--tls-port", str(port), *tls.server_options()]
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tls.ca}"
    else:
        where += ["--port", str(port)]
        url = f"redis://127.0.0.1:{port}/0"
    log = folder / "redis-server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["redis-server", *where, *options], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        client = redis.Redis.from_url(url)
        try:
            wait_for(client.ping, 30, "the test's own redis-server")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; its log:\n{log.read_text()[-3000:]}") from None
        client.close()
        yield url, port
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def tls_cluster(folder: Path, tls: Certificates, primaries: int = 3) -> Iterator[Sequence[int]]:
    """A Redis Cluster of ``primaries`` primaries, each with a replica, that speaks TLS
    only, to its clients and between its nodes: their ports, every replica in sync."""
    with ExitStack() as stack:
        ports = []
        for number in range(primaries * 2):
            own = folder / f"node{number}"
            own.mkdir()
            # The bus port named, not Redis's port + 10000: free ports go up to 60999.
            cluster = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
            cluster += ["--tls-cluster", "yes"]
            _, port = stack.enter_context(
                redis_server(own, *cluster, "--tls-replication", "yes", tls=tls)
            )
            ports.append(port)
        trusting = ["--tls", "--cacert", str(tls.ca)]
        nodes = [f"127.0.0.1:{port}" for port in ports]
        create = [*trusting, "--cluster", "create", *nodes, "--cluster-replicas", "1"]
        subprocess.run(["redis-cli", *create, "--cluster-yes"], capture_output=True, check=True)

        def in_sync(port: int) -> bool:
            ask = ["redis-cli", *trusting, "-p", str(port), "info", "replication"]
            shown = subprocess.run(ask, capture_output=True, text=True, check=True).stdout
            return "role:slave" not in shown or "master_link_status:up" in shown

        wait_for(lambda: all(map(in_sync, ports)), 60, "the TLS cluster's replicas in sync")
        yield ports
