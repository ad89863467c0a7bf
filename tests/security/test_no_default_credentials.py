"""No default credentials; API keys validated, never logged, compared in constant time."""

from __future__ import annotations

import inspect
import logging
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from tests.helpers import KEYS, auth
from tests.security._support import ALL_KEYS, sqlite_app

from nexus_ml.api import auth as auth_module
from nexus_ml.api.logs import JsonFormatter, PlainFormatter
from nexus_ml.api.routes import health as health_routes
from nexus_ml.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# The setup guide's example password, spelled so that this file does not contain it.
GUIDE_PASSWORD = "nexus" + "123"
# A password, secret or token given a literal value, in code or configuration.
LITERAL_SECRET = re.compile(
    r"""(?ix)\b[\w.-]*(password|passwd|pwd|secret|token|api_?key)[\w.-]*["']?\s*[:=]\s*
        (?P<q>["'])(?P<value>[^"'\n]{3,})(?P=q)"""
)
# user:password@ in a URL.
URL_PASSWORD = re.compile(r"://[^/\s:@'\"]+:(?P<value>[^/\s@'\"]+)@")
# Values that name where a secret comes from, or stand for one, rather than being one.
PLACEHOLDER = re.compile(r"^(.*\$\{.*\}.*|.*<[^>]+>.*|\.\.\.|[A-Z_]+|/.*|.*_file)$")
# Literal matches that are not secrets, each with the reason.
_SWAGGER = "src/nexus_ml/api/static/vendor/swagger-ui/swagger-ui-bundle.js"
NOT_SECRETS = {
    ("src/nexus_ml/render/kubernetes.py", "nexus-ml-secrets"): "the name of a k8s Secret",
    # Swagger UI's minified form code: labels of its password and client-secret inputs.
    (_SWAGGER, "text"): "input type shown for a password field",
    (_SWAGGER, "),B?$e.createElement("): "code after a 'Password:' label",
    (_SWAGGER, "),fe?$e.createElement("): "code after 'password:' and 'client_secret:' labels",
    (_SWAGGER, "),o?$e.createElement("): "code after a 'Password:' label",
}


def _repo_files(*, tracked_only: bool = False) -> list[str]:
    """Tracked files plus untracked files git does not ignore (what the next commit may add)."""
    git = ["git", "-C", str(ROOT), "ls-files", "-z"]
    files = subprocess.run(git, capture_output=True, check=True).stdout.decode().split("\0")
    if not tracked_only:
        others = subprocess.run(
            [*git, "--others", "--exclude-standard"], capture_output=True, check=True
        )
        files += others.stdout.decode().split("\0")
    return sorted({f for f in files if f and (ROOT / f).is_file()})


def _text(path: str) -> str | None:
    data = (ROOT / path).read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", "replace")


def test_guide_password_is_nowhere_in_the_repository() -> None:
    files = _repo_files()
    assert len(files) > 100, "git ls-files found too little: is this the repository?"
    found = []
    for path in files:
        text = _text(path)
        if text is None or GUIDE_PASSWORD not in text:
            continue
        for line in text.splitlines():
            # A test may assert that the password is absent from something it renders.
            if GUIDE_PASSWORD in line and not (path.startswith("tests/") and " not in " in line):
                found.append(f"{path}: {line.strip()}")
    assert not found, found


def test_no_literal_secrets_in_src_or_deploy() -> None:
    files = [f for f in _repo_files() if f.startswith(("src/", "deploy/"))]
    assert any(f.startswith("deploy/") for f in files) and any(f.endswith(".py") for f in files)
    found = []
    for path in files:
        text = _text(path)
        if text is None:
            continue
        for pattern in (LITERAL_SECRET, URL_PASSWORD):
            for m in pattern.finditer(text):
                value = m.group("value").strip()
                if PLACEHOLDER.match(value) or (path, value) in NOT_SECRETS:
                    continue
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{path}:{line}: {m.group(0).strip()}")
    assert not found, found


def test_the_detectors_would_find_a_literal_secret() -> None:
    # Guards the two tests above against a pattern that silently matches nothing.
    assert LITERAL_SECRET.search('db_password = "hunter2hunter2"')
    assert LITERAL_SECRET.search("GF_SECURITY_ADMIN_PASSWORD: 'admin123'")
    assert URL_PASSWORD.search("postgresql://nexus:hunter2@db:5432/x")
    for placeholder in ("<password>", "${POSTGRES_PASSWORD}", "PASSWORD", "admin:<key>"):
        assert PLACEHOLDER.match(placeholder), placeholder
    for secret in ("hunter2", "admin:0123456789abcdef", "changeme"):
        assert not PLACEHOLDER.match(secret), secret


def test_settings_have_no_working_default_secret() -> None:
    secret_fields = [name for name, f in Settings.model_fields.items() if f.annotation is SecretStr]
    assert {"api_keys", "metrics_token"} <= set(secret_fields)
    for name in secret_fields:
        default = Settings.model_fields[name].default
        assert isinstance(default, SecretStr) and default.get_secret_value() == "", name
    assert Settings.model_fields["database_url"].default == ""  # SQLite: no password at all


@pytest.mark.parametrize(
    "value",
    [
        "admin:" + "k" * 15,  # one short of 16
        "admin:",
        "admin",
        "k" * 32,  # no scope
        "root:" + "k" * 32,  # unknown scope
        "predict:" + "k" * 20 + ",monitor:short",
        ":" + "k" * 32,
        # Keys no client could present as configured (header values are Latin-1 bytes and
        # lose surrounding spaces): non-ASCII, spaces, control characters.
        "admin:" + "clé-secrète-" + "k" * 16,
        "admin:" + "ключ" * 5,
        "predict:" + "k" * 20 + ",admin:" + "k" * 16 + "\u00a0",  # NBSP is not stripped
        "admin:" + "k" * 8 + "\u00a0" + "k" * 8,
        "admin:" + "k" * 10 + " " + "k" * 10,
        "admin:" + "k" * 8 + "\t" + "k" * 8,
        "admin:" + "k" * 16 + "\x07",
    ],
)
def test_malformed_or_short_keys_are_refused(value: str, tmp_path: Path) -> None:
    # Refused when the settings are read, so the service never starts with it.
    with pytest.raises(ValueError) as err:
        Settings(api_keys=value, data_dir=tmp_path)
    # The message names the scope, never the key material (nor the whole value).
    key_parts = [p.partition(":")[2] for p in value.split(",") if len(p.partition(":")[2]) > 3]
    assert not any(k in str(err.value) for k in key_parts), str(err.value)
    if len(value) >= 16:
        assert value not in str(err.value)


@pytest.mark.parametrize(
    "token", ["short-token", "métrica-token-" + "t" * 16, "token " + "t" * 16, "t" * 16 + "\x00"]
)
def test_unusable_metrics_tokens_are_refused(token: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        Settings(metrics_token=token, data_dir=tmp_path)
    assert "ML_METRICS_TOKEN" in str(err.value)
    assert token not in str(err.value) and token.strip() not in str(err.value)


def test_well_formed_keys_are_accepted() -> None:
    keys = Settings(api_keys=" admin:" + "a" * 16 + " , predict:" + "b" * 40).parsed_api_keys()
    assert keys == {"a" * 16: "admin", "b" * 40: "predict"}
    # Every visible ASCII character may appear in a key (a ':' after the first belongs to it).
    visible = "".join(chr(c) for c in range(0x21, 0x7F)).replace(",", "")
    assert Settings(api_keys=f"monitor:{visible}").parsed_api_keys() == {visible: "monitor"}
    assert Settings(metrics_token=visible).metrics_token.get_secret_value() == visible
    assert "a" * 16 not in repr(Settings(api_keys="admin:" + "a" * 16))


# -- keys never reach a log ----------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(JsonFormatter().format(record))
        self.lines.append(PlainFormatter().format(record))
        self.lines.append(repr(record.__dict__))


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[_Capture]:
    caplog.set_level(logging.DEBUG)
    handler = _Capture()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


def test_api_keys_are_never_logged(
    bundled_models: Path, tmp_path: Path, capture: _Capture, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = ["wrong-key-" + "w" * 20, "admin-key-0123456789abcdeX"]  # the second: one char off
    app = sqlite_app(bundled_models, tmp_path, metrics_token="metrics-token-" + "m" * 20)
    with TestClient(app) as client:
        for scope in KEYS:
            assert client.get("/api/v1/models", headers=auth(scope)).status_code in (200, 403)
            client.get("/api/v1/monitoring/status", headers={"X-API-Key": KEYS[scope]})
        for key in wrong:
            r = client.get("/api/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 401 and key not in r.text
            client.get("/api/v1/models", headers={"X-API-Key": key})
        client.post("/api/v1/monitoring/drift/run", headers=auth("admin"))
        client.put("/api/v1/monitoring/config/thresholds", json={"nope": 1}, headers=auth("admin"))
        r = client.put(
            "/api/v1/monitoring/config/thresholds",
            json={"cpu_usage_high": 75},
            headers=auth("admin"),
        )
        assert r.status_code == 200, r.text
        audit = app.state.service.store.list_audit()
        metrics = client.get(
            "/metrics", headers={"Authorization": "Bearer metrics-token-" + "m" * 20}
        ).text
        assert (
            client.get("/metrics", headers={"Authorization": "Bearer " + wrong[0]}).status_code
            == 401
        )
    secrets = [*KEYS.values(), *wrong, "metrics-token-" + "m" * 20, ALL_KEYS]
    assert capture.lines  # startup and shutdown log something: the check is not vacuous
    leaked = [s for s in secrets if any(s in line for line in capture.lines) or s in caplog.text]
    assert not leaked, leaked
    assert not [s for s in secrets if s in metrics]
    # The audit log names the actor by a fingerprint of the key's digest, never the key.
    fingerprint = auth_module._digest(KEYS["admin"]).hex()[:12]
    assert audit and {a.actor for a in audit} == {fingerprint}, audit
    assert not [s for s in secrets if s in repr(audit)]


# -- constant-time comparison --------------------------------------------------------------------


def _spy_compare_digest(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real = auth_module.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    return calls


def test_key_check_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "hmac.compare_digest(" in inspect.getsource(auth_module.KeyStore.authenticate)
    calls = _spy_compare_digest(monkeypatch)
    store = auth_module.KeyStore({KEYS["admin"]: "admin", KEYS["predict"]: "predict"})
    assert store.authenticate(KEYS["admin"]).scope == "admin"  # type: ignore[union-attr]
    assert store.authenticate(KEYS["predict"]).scope == "predict"  # type: ignore[union-attr]
    assert store.authenticate("x" * 32) is None
    assert store.authenticate(KEYS["admin"][:-1] + "X") is None
    assert calls and all(len(a) == len(b) == 32 for a, b in calls)  # digests, equal length


def test_every_configured_digest_is_compared_on_every_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _spy_compare_digest(monkeypatch)
    keys = {KEYS["admin"]: "admin", KEYS["predict"]: "predict"}
    configured = {auth_module._digest(k) for k in keys}
    store = auth_module.KeyStore(keys)  # type: ignore[arg-type]
    for attempt in (KEYS["admin"], "x" * 32, KEYS["predict"][:-1] + "X"):
        calls.clear()
        store.authenticate(attempt)
        # The same work whichever key (if any) matches: one comparison per configured key.
        compared = {a for a, _ in calls} | {b for _, b in calls}
        assert configured <= compared, attempt
        assert len(calls) == len(keys), attempt


def test_metrics_token_uses_compare_digest(
    bundled_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "hmac.compare_digest(" in inspect.getsource(health_routes)
    calls: list[Any] = []
    real = health_routes.hmac.compare_digest
    monkeypatch.setattr(
        health_routes.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b)
    )
    token = "metrics-token-" + "t" * 20
    app = sqlite_app(bundled_models, tmp_path, metrics_token=token)
    with TestClient(app) as client:
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/metrics").status_code == 401
    assert len(calls) == 3
