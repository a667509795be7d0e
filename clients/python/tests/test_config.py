"""Configuration from the environment and arguments."""

from __future__ import annotations

import pytest

from mnemo_client import AsyncMnemo, Mnemo


def test_url_and_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_URL", "http://example.test:9000/")
    monkeypatch.setenv("MNEMO_API_KEY", "tenant-key")
    monkeypatch.setenv("MNEMO_ADMIN_KEY", "admin-key")
    client = Mnemo()
    assert client.base_url == "http://example.test:9000"
    assert (client._options.api_key, client._options.admin_key) == ("tenant-key", "admin-key")
    assert AsyncMnemo().base_url == "http://example.test:9000"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_URL", "http://example.test:9000")
    monkeypatch.setenv("MNEMO_API_KEY", "env-key")
    client = Mnemo("http://other.test", api_key="arg-key", timeout=2.5)
    assert client.base_url == "http://other.test"
    assert client._options.api_key == "arg-key" and client._options.timeout == 2.5


def test_default_url_is_the_servers_default_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNEMO_URL", raising=False)
    assert Mnemo().base_url == "http://127.0.0.1:8080"


def test_negative_max_retries_is_refused() -> None:
    with pytest.raises(ValueError):
        Mnemo(max_retries=-1)
