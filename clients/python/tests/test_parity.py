"""The async resources mirror the sync ones: same methods, same parameters and defaults."""

from __future__ import annotations

import inspect

import pytest

from mnemo_client import _async_resources as a
from mnemo_client import _resources as s

PAIRS = [
    (s.Memories, a.AsyncMemories),
    (s.Relationships, a.AsyncRelationships),
    (s.Policies, a.AsyncPolicies),
    (s.UsageResource, a.AsyncUsageResource),
    (s.Audit, a.AsyncAudit),
    (s.Projects, a.AsyncProjects),
    (s.Tenants, a.AsyncTenants),
    (s.Keys, a.AsyncKeys),
    (s.Admin, a.AsyncAdmin),
]


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_async_resource_has_the_same_methods_and_parameters(sync: type, async_: type) -> None:
    ms, ma = _methods(sync), _methods(async_)
    assert ms.keys() == ma.keys()
    for name in ms:
        ps = [(p.name, p.kind, repr(p.default)) for p in ms[name].parameters.values()]
        pa = [(p.name, p.kind, repr(p.default)) for p in ma[name].parameters.values()]
        assert ps == pa, name


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_async_methods_are_coroutines_except_paginated_lists(sync: type, async_: type) -> None:
    for name, fn in inspect.getmembers(async_, inspect.isfunction):
        if name.startswith("_"):
            continue
        paginated = "AsyncPaginator" in str(inspect.signature(fn).return_annotation)
        assert inspect.iscoroutinefunction(fn) != paginated, name
