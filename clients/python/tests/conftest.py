"""Fixtures: the real `mnemo` server on a free port against a fresh PostgreSQL database.

Environment:
    DATABASE_URL     PostgreSQL server (owner role) where a database `mnemo_t_py_<random>` is
                     created for the session and dropped after it (required).
    MNEMO_BIN        the `mnemo` binary; default: `cargo build -p mnemo` and use
                     `$CARGO_TARGET_DIR/debug/mnemo` (or `<repo>/target/debug/mnemo`).
    MNEMO_MODEL_DIR, MNEMO_ONNX_MODEL, MNEMO_ONNX_RUNTIME: the local embedding model, passed on
                     (`eval "$(bash scripts/env.sh)"` exports them).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mnemo_client import Mnemo

REPO = Path(__file__).resolve().parents[3]


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.exit(
            "DATABASE_URL is not set: run scripts/test-python.sh (or export "
            "DATABASE_URL=postgres://USER@HOST:PORT/DB)",
            returncode=2,
        )
    return url


@functools.cache
def _binary() -> str:
    explicit = os.environ.get("MNEMO_BIN")
    if explicit:
        return explicit
    subprocess.run(["cargo", "build", "-q", "-p", "mnemo"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return str(target / "debug" / "mnemo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(path="/" + name))


@dataclass
class Server:
    url: str
    admin_key: str
    process: subprocess.Popen  # type: ignore[type-arg]
    log: Path

    def admin(self, **kwargs: object) -> Mnemo:
        return Mnemo(self.url, admin_key=self.admin_key, **kwargs)  # type: ignore[arg-type]


def _start_server(database_url: str, extra_env: dict[str, str], log_dir: Path) -> Server:
    port = _free_port()
    admin_key = "admin-" + secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "MNEMO_BIND": f"127.0.0.1:{port}",
            "MNEMO_ADMIN_KEY": admin_key,
            "MNEMO_EMBED_THREADS": env.get("MNEMO_EMBED_THREADS", "1"),
            "MNEMO_LOG": env.get("MNEMO_LOG", "warn"),
        }
    )
    env.update(extra_env)
    log = log_dir / f"mnemo-{port}.log"
    process = subprocess.Popen(
        [_binary(), "serve"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mnemo exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return Server(url, admin_key, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"mnemo did not answer within 60 s:\n{log.read_text()}")


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    import psycopg

    base = _database_url()
    name = f"mnemo_t_py_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def log_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mnemo-py-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def server(database_url: str, log_dir: Path) -> Iterator[Server]:
    """The server most tests use (default limits, the local model)."""
    s = _start_server(database_url, {}, log_dir)
    try:
        yield s
    finally:
        _stop(s)
        if os.environ.get("MNEMO_PY_SHOW_LOG"):
            sys.stderr.write(s.log.read_text())


@pytest.fixture(scope="session")
def strict_server(database_url: str, log_dir: Path, server: Server) -> Iterator[Server]:
    """A second server on the same database with tight limits: one request per second per key,
    4 KiB bodies, and an embedding provider that cannot be reached (503
    `embedding_unavailable`). Started after `server`, which migrated the database."""
    s = _start_server(
        database_url,
        {
            "MNEMO_RATE_LIMIT_PER_KEY": "1",
            "MNEMO_RATE_LIMIT_BURST": "1",
            "MNEMO_MAX_BODY_BYTES": "4096",
            "MNEMO_EMBEDDER": "http",
            "MNEMO_EMBED_URL": f"http://127.0.0.1:{_free_port()}/v1",
            "MNEMO_EMBED_TIMEOUT_SECS": "2",
        },
        log_dir,
    )
    try:
        yield s
    finally:
        _stop(s)


@pytest.fixture(scope="session")
def admin(server: Server) -> Iterator[Mnemo]:
    with server.admin() as client:
        yield client


@pytest.fixture(scope="session")
def project_id(admin: Mnemo) -> str:
    return admin.admin.projects.create(f"py-{uuid.uuid4().hex[:8]}", "pytest").id


TenantFactory = Callable[..., Mnemo]


@pytest.fixture(scope="session")
def new_tenant(server: Server, admin: Mnemo, project_id: str) -> Iterator[TenantFactory]:
    """Makes a fresh tenant and returns a client with a key of the given scopes (default `*`)."""
    clients: list[Mnemo] = []

    def make(scopes: list[str] | None = None, **tenant_fields: object) -> Mnemo:
        tenant_id = f"t-{uuid.uuid4().hex[:10]}"
        admin.admin.tenants.create(tenant_id, project_id, tenant_id, **tenant_fields)  # type: ignore[arg-type]
        key = admin.admin.keys.create(tenant_id, "pytest", scopes or ["*"])
        client = Mnemo(server.url, api_key=key.secret)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def tenant_a(new_tenant: TenantFactory) -> Mnemo:
    return new_tenant()


@pytest.fixture(scope="session")
def tenant_b(new_tenant: TenantFactory) -> Mnemo:
    return new_tenant()


@pytest.fixture
def tenant(new_tenant: TenantFactory) -> Mnemo:
    """A tenant of its own for one test (counts, pages and usage start from zero)."""
    return new_tenant()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def unit_vector(i: int, dim: int = 384) -> list[float]:
    v = [0.0] * dim
    v[i % dim] = 1.0
    return v
