"""The hand-written models against the OpenAPI document the server serves: every property the
server documents is a field of the matching model, and required properties are required."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

import mnemo_client.types as t

from .conftest import Server

# OpenAPI schema name -> model.
PAIRS: dict[str, type[BaseModel]] = {
    "MemoryOut": t.Memory,
    "MemoryInput": t.NewMemory,
    "SearchFilter": t.SearchFilter,
    "SearchHit": t.SearchHit,
    "SearchOut": t.SearchResult,
    "Related": t.Related,
    "Relationship": t.Relationship,
    "Neighbours": t.Neighbours,
    "GraphNodeOut": t.GraphNode,
    "Graph": t.Graph,
    "AccessPolicy": t.Policy,
    "Usage": t.Usage,
    "AuditRecord": t.AuditRecord,
    "Project": t.Project,
    "Tenant": t.Tenant,
    "ApiKey": t.ApiKey,
    "MaintenanceReport": t.MaintenanceReport,
    "Health": t.Health,
    "Ready": t.Ready,
}

INPUTS = {"MemoryInput", "SearchFilter"}  # all optional on the client side except content


@pytest.fixture(scope="module")
def schemas(server: Server) -> dict[str, dict]:  # type: ignore[type-arg]
    return httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_model_has_every_documented_property(schemas: dict[str, dict], name: str) -> None:  # type: ignore[type-arg]
    documented = set(schemas[name].get("properties", {}))
    assert documented <= set(PAIRS[name].model_fields), (
        f"{name}: missing {documented - set(PAIRS[name].model_fields)}"
    )
    if name not in INPUTS:
        required = set(schemas[name].get("required", []))
        model_required = {n for n, f in PAIRS[name].model_fields.items() if f.is_required()}
        assert required == model_required


def test_created_key_adds_the_secret(schemas: dict[str, dict]) -> None:  # type: ignore[type-arg]
    assert "secret" in t.CreatedKey.model_fields
    assert set(schemas["ApiKey"]["properties"]) <= set(t.CreatedKey.model_fields)


def test_unknown_fields_from_a_newer_server_are_kept() -> None:
    h = t.Health.model_validate({"status": "ok", "uptime_secs": 3})
    assert h.model_extra == {"uptime_secs": 3}
