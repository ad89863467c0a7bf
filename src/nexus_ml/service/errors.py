"""Domain errors of the service; ``api/errors.py`` maps each class to one HTTP status.

Like every error the client sees, ``detail`` names the field, never its value.
"""

from __future__ import annotations

from typing import Any

from nexus_ml.storage.records import is_id


class ServiceError(Exception):
    """A refusal the caller can act on: what went wrong and the field it concerns."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(ServiceError):
    """What was asked for does not exist (an unknown model, prediction or run)."""


class Conflict(ServiceError):
    """The request contradicts the current state (already labelled, already training)."""


class Invalid(ServiceError):
    """The request's values break a rule (a feature, a window, a threshold).

    ``problems`` lists every problem when there can be several (each ``{"field", "detail"}``);
    ``detail`` and ``field`` are then the first one's.
    """

    def __init__(
        self, detail: str, field: str | None = None, *, problems: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail, field)
        self.problems = problems


class Unavailable(ServiceError):
    """A dependency is down or full (the database, the record writer); retrying may succeed."""


class Failed(ServiceError):
    """The service could not do what it accepted to do (a bug, or data no store can hold)."""


def require_id(value: str, field: str, what: str) -> str:
    """``value`` if it can be a stored id, else the NotFound of an unknown one.

    Every id from a path goes through here before any query: PostgreSQL refuses a NUL
    byte in a string (a 500 before this check), SQLite does not, and an id that
    :func:`~nexus_ml.storage.records.new_id` cannot have made is unknown on both.
    """
    if not is_id(value):
        raise NotFound(f"unknown {what}", field)
    return value


def _scalars(value: Any, budget: int = 100) -> list[str]:
    """Text of the scalars in ``value`` (a bounded number), as they could appear in a message."""
    out: list[str] = []
    stack = [value]
    while stack and len(out) < budget:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(item.keys())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str | bytes):
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            if text.strip():
                out.append(text.strip())
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out.extend({str(item), repr(item)})
    return out


def echoes(message: str, value: Any) -> bool:
    """True if the text of any scalar inside ``value`` appears in ``message``."""
    return any(text in message for text in _scalars(value))
