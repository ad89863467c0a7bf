"""Strict pydantic building blocks of a bundle's typed metadata (``ml.metadata``, ``ml.baseline``).

No coercion, no unknown keys, no NaN or infinity, frozen: what a file says is what it holds.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Floats written by json.dump(repr) read back exactly; the slack only absorbs rounding in sums
# and in the sketch's interpolation (a quantile may sit an ulp below its predecessor).
REL_TOL = 1e-9

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class Strict(BaseModel):
    """A metadata object: strict types, no extra keys, finite floats, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)
