"""API keys: the exact refusals, the digest and fingerprint, and the first-start key file."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.helpers import KEYS, auth

from nexus_ml.api.auth import KeyStore, ensure_first_start_key
from nexus_ml.config import Settings

MODELS = "/api/v1/models"
MISSING = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def test_the_three_refusals_say_exactly_what_is_wrong(client: TestClient) -> None:
    r = client.get(MODELS)
    assert (r.status_code, r.json()["detail"]) == (401, MISSING)
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get(MODELS, headers={"X-API-Key": "not-a-key"})
    assert (r.status_code, r.json()["detail"]) == (401, "invalid API key")
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get(MODELS, headers=auth("monitor"))
    assert r.status_code == 403
    assert r.json()["detail"] == "this API key has scope 'monitor'; this endpoint needs 'predict'"
    # A known key with too little scope is not asked to authenticate again.
    assert "www-authenticate" not in r.headers


def test_header_names_are_case_insensitive(client: TestClient) -> None:
    assert client.get(MODELS, headers={"AUTHORIZATION": f"Bearer {KEYS['predict']}"}).is_success
    assert client.get(MODELS, headers={"X-API-KEY": KEYS["predict"]}).is_success


def test_the_fingerprint_is_the_first_twelve_hex_digits_of_the_digest() -> None:
    principal = KeyStore({"s3cret": "monitor"}).authenticate("s3cret")
    assert principal is not None and principal.scope == "monitor"
    assert principal.fingerprint == hashlib.sha256(b"s3cret").hexdigest()[:12]


def test_a_key_with_a_lone_surrogate_is_compared_not_a_crash() -> None:
    # Keys come from settings and headers as str; a lone surrogate must hash like any text.
    store = KeyStore({"k\udc80ey": "admin"})
    assert store.authenticate("k\udc80ey") is not None
    assert store.authenticate("k\udc81ey") is None


@pytest.mark.parametrize("data_dir", ["fresh/nested/data", "existing"])
def test_the_first_start_key_is_created_under_a_new_or_existing_data_folder(
    tmp_path: Path, data_dir: str
) -> None:
    (tmp_path / "existing").mkdir()
    settings = Settings(data_dir=tmp_path / data_dir, api_keys="")
    updated, key = ensure_first_start_key(settings)
    assert key is not None
    # "nx_" and 32 random bytes in URL-safe base64 (43 characters).
    assert key.startswith("nx_") and len(key) == 3 + 43
    path = tmp_path / data_dir / "api_key"
    assert path.read_bytes() == key.encode("ascii") + b"\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert updated.parsed_api_keys() == {key: "admin"}


def test_configured_keys_leave_the_settings_alone_and_write_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", api_keys="monitor:abcdefghijklmnop")
    assert ensure_first_start_key(settings) == (settings, None)
    assert not (tmp_path / "d").exists()
