"""`client.admin`: projects, tenants, keys and maintenance."""

from __future__ import annotations

import uuid

import pytest

from mnemo_client import (
    ConflictError,
    ForbiddenError,
    Mnemo,
    MnemoError,
    NotFoundError,
    UnauthorizedError,
)

from .conftest import Server


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_project_create_get_update_delete(admin: Mnemo) -> None:
    p = admin.admin.projects.create(_name("proj"), "owner-1", description="d", settings={"a": 1})
    assert admin.admin.projects.get(p.id) == p
    renamed = admin.admin.projects.update(p.id, description="new", settings={"b": 2})
    assert (renamed.name, renamed.description, renamed.settings) == (p.name, "new", {"b": 2})
    admin.admin.projects.delete(p.id)
    with pytest.raises(NotFoundError):
        admin.admin.projects.get(p.id)


def test_project_with_tenants_is_deleted_only_with_cascade(admin: Mnemo) -> None:
    p = admin.admin.projects.create(_name("casc"), "o")
    tid = _name("tc")
    admin.admin.tenants.create(tid, p.id, "T")
    with pytest.raises(ConflictError) as e:
        admin.admin.projects.delete(p.id)
    assert e.value.code == "project_has_tenants"
    admin.admin.projects.delete(p.id, cascade=True)
    with pytest.raises(NotFoundError):
        admin.admin.tenants.get(tid)


def test_projects_list_pages_through_every_project(admin: Mnemo) -> None:
    made = {admin.admin.projects.create(_name("lp"), "o").id for _ in range(3)}
    seen = [p.id for p in admin.admin.projects.list(limit=2)]
    assert made <= set(seen) and len(seen) == len(set(seen))


def test_tenant_create_get_update_list_delete(admin: Mnemo, project_id: str) -> None:
    tid = _name("ten")
    t = admin.admin.tenants.create(
        tid, project_id, "Prod", isolation_level="strict", max_memories=10
    )
    assert (t.tenant_id, t.project_id, t.max_memories) == (tid, project_id, 10)
    assert admin.admin.tenants.get(tid) == t
    updated = admin.admin.tenants.update(tid, name="Renamed", max_memories=None)
    assert (updated.name, updated.max_memories) == ("Renamed", None)
    assert tid in {x.tenant_id for x in admin.admin.tenants.list(project_id=project_id, limit=1)}
    admin.admin.tenants.delete(tid)
    with pytest.raises(NotFoundError):
        admin.admin.tenants.get(tid)


def test_duplicate_tenant_id_is_a_conflict(admin: Mnemo, project_id: str) -> None:
    tid = _name("dup")
    admin.admin.tenants.create(tid, project_id, "a")
    with pytest.raises(ConflictError) as e:
        admin.admin.tenants.create(tid, project_id, "b")
    assert e.value.code == "tenant_exists"


def test_key_create_list_and_revoke_stops_it_working(
    server: Server, admin: Mnemo, project_id: str
) -> None:
    tid = _name("keys")
    admin.admin.tenants.create(tid, project_id, "K")
    key = admin.admin.keys.create(tid, "agent", ["memories:read", "memories:write"])
    assert key.secret and key.scopes == ["memories:read", "memories:write"]
    assert [k.id for k in admin.admin.keys.list(tid)] == [key.id]
    agent = Mnemo(server.url, api_key=key.secret)
    agent.memories.create("works", memory_id="w")
    revoked = admin.admin.keys.revoke(tid, key.id)
    assert revoked.revoked_at is not None
    with pytest.raises(UnauthorizedError):
        agent.memories.get("w")


def test_maintenance_runs_on_request(admin: Mnemo) -> None:
    report = admin.admin.run_maintenance()
    assert report.analytics_refreshed is True and report.errors == []


def test_admin_operations_without_an_admin_key_fail_before_sending(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNEMO_ADMIN_KEY", raising=False)
    with pytest.raises(MnemoError, match="admin key"):
        Mnemo(server.url).admin.projects.create("x", "y")


def test_a_tenant_key_is_not_an_admin_key(server: Server, tenant_a: Mnemo) -> None:
    wrong = Mnemo(server.url, admin_key=tenant_a._options.api_key)
    with pytest.raises(ForbiddenError) as e:
        list(wrong.admin.projects.list())
    assert e.value.code == "admin_only"


def test_health_and_ready(admin: Mnemo) -> None:
    assert admin.health().status == "ok"
    ready = admin.ready()
    assert ready.status == "ready" and ready.pgvector_version
