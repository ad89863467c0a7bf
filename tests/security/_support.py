"""Helpers shared by the security tests: a SQLite service, route discovery, /metrics parsing."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from tests.helpers import KEYS

from nexus_ml.api.app import create_app
from nexus_ml.api.middleware import route_templates
from nexus_ml.config import Settings

ALL_KEYS = ",".join(f"{scope}:{key}" for scope, key in KEYS.items())
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def sqlite_settings(bundled_models: Path, root: Path, **overrides: Any) -> Settings:
    """Settings for a service on SQLite under ``root`` with a private copy of the bundled models."""
    models = root / "models"
    if not models.exists():
        shutil.copytree(bundled_models, models)
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{root / 'nexus.db'}",
        "model_path": models,
        "data_dir": root / "data",
        "api_keys": ALL_KEYS,
        "writer_flush_seconds": 0.05,
        "system_interval_seconds": 0.2,
        "alert_interval_seconds": 3600.0,
        "drift_interval_seconds": 3600.0,
        "drift_first_run_seconds": 3600.0,
        "shutdown_grace_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


def sqlite_app(bundled_models: Path, root: Path, **overrides: Any) -> FastAPI:
    """A fresh (not started) service with its own metrics registry."""
    return create_app(
        sqlite_settings(bundled_models, root, **overrides), registry=CollectorRegistry()
    )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One (method, path template) the application answers."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every method and full path template of the app's routes, discovered from its route tree."""
    found: set[Endpoint] = set()
    for route, template in route_templates(app.routes):
        methods = getattr(route, "methods", None)
        if not methods:  # mounts, websockets: none today (a test asserts it)
            continue
        for method in methods:
            if method != "HEAD":  # Starlette adds HEAD to every GET
                found.add(Endpoint(method, template))
    return sorted(found, key=lambda e: (e.path, e.method))


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


def concrete_path(template: str, values: dict[str, str] | None = None) -> str:
    """``template`` with each ``{param}`` replaced (default: a plausible placeholder)."""
    values = values or {}

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1), "x" * 8)

    return _PARAM.sub(fill, template)


# -- /metrics --------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+\S+")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Exposition:
    """A parsed Prometheus text exposition: sample lines grouped by family."""

    text: str

    def series(self) -> dict[str, set[str]]:
        """Metric family (from # TYPE) -> set of ``name{labels}`` series."""
        family_of: dict[str, str] = {}
        out: dict[str, set[str]] = {}
        families: list[str] = []
        for line in self.text.splitlines():
            if line.startswith("# TYPE "):
                families.append(line.split()[2])
                out.setdefault(families[-1], set())
                continue
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if m is None:
                continue
            name = m.group(1)
            family = family_of.get(name)
            if family is None:
                # The longest family that prefixes the sample name (histogram _bucket/_sum/...).
                family = max((f for f in families if name.startswith(f)), key=len, default=name)
                family_of[name] = family
            out.setdefault(family, set()).add(name + (m.group(2) or ""))
        return out

    def samples(self) -> list[tuple[str, dict[str, str]]]:
        """(sample name, labels) of every sample line."""
        out: list[tuple[str, dict[str, str]]] = []
        for line in self.text.splitlines():
            if line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if m:
                out.append((m.group(1), dict(_LABEL.findall(m.group(2) or ""))))
        return out

    def label_values(self) -> set[str]:
        """Every label value that appears in the exposition."""
        return {value for _, labels in self.samples() for value in labels.values()}


def iter_strings(value: Any) -> Iterator[str]:
    """Every string (keys included) inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from iter_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from iter_strings(v)
    elif value is not None:
        yield repr(value)
