"""A user's CSV as a typed table: the feature schema inferred, the frame serving will rebuild.

Column names are kept as the file has them (surrounding spaces trimmed), so a client sends the
names of its own file. Types are inferred unless declared: a column whose every present cell is
a whole number is an ``integer``, one whose every present cell is a number is a ``number``, any
other is a ``category``; an empty cell is missing, and a column with a missing cell is nullable.
Errors name the line and the column, never a cell's value (cells are patient data).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nexus_ml.ml.frame import to_frame
from nexus_ml.ml.labels import RULE, label_problem
from nexus_ml.ml.schema import (
    MAX_CATEGORY_CHARS,
    FeatureSchema,
    FeatureSpec,
    feature_name_problem,
)

MIN_ROWS = 10
# More distinct texts than this is an identifier or free text, not a category to learn from;
# each category also becomes a metadata entry and a one-hot column.
MAX_CATEGORIES = 1000
_WHOLE = re.compile(r"[+-]?\d+")


class TrainingDataError(ValueError):
    """Training data that cannot produce a model; the message says why (never a value)."""


@dataclass(frozen=True)
class Table:
    """Features as served (``to_frame`` dtypes), labels, and the inferred schema."""

    frame: pd.DataFrame
    y: np.ndarray
    schema: FeatureSchema


def read_table(
    path: str | os.PathLike[str],
    target: str,
    *,
    categorical: Collection[str] = (),
    nullable: Collection[str] = (),
) -> Table:
    """Read a CSV with a header into a typed table; ``categorical``/``nullable`` override."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as fh:
            header, cells, labels = _parse(csv.reader(fh), target)
    except OSError as exc:
        raise TrainingDataError(f"cannot read the CSV file ({type(exc).__name__})") from exc
    except UnicodeDecodeError:
        raise TrainingDataError("the CSV file is not UTF-8 text") from None
    except csv.Error:
        raise TrainingDataError("the file is not valid CSV") from None
    for option, names in (("--categorical", categorical), ("--nullable", nullable)):
        unknown = sorted(set(names) - set(header))
        if unknown:
            raise TrainingDataError(f"{option}: {unknown[0]!r} is not a feature column")
    specs, columns = [], []
    for j, name in enumerate(header):
        spec, column = _column(name, [row[j] for row in cells], name in categorical)
        if name in nullable and not spec.nullable:
            spec = FeatureSpec(
                spec.name, spec.type, spec.min, spec.max, True, categories=spec.categories
            )
        specs.append(spec)
        columns.append(column)
    schema = FeatureSchema(tuple(specs))
    X = np.empty((len(cells), len(header)), dtype=object)
    for j, column in enumerate(columns):
        X[:, j] = column
    return Table(to_frame(X, schema), np.array(labels, dtype=str), schema)


def _parse(
    reader: Iterator[list[str]], target: str
) -> tuple[list[str], list[list[str]], list[str]]:
    """Feature names, feature cells (stripped) per row, and labels."""
    header = next(reader, None)
    if not header:
        raise TrainingDataError("the CSV file is empty; expected a header row")
    header = [h.strip() for h in header]
    if target not in header:
        raise TrainingDataError(f"target column {target!r} is not in the CSV header")
    t = header.index(target)
    keep = [i for i in range(len(header)) if i != t]
    if not keep:
        raise TrainingDataError("the CSV has no feature columns besides the target")
    names = [header[i] for i in keep]
    for i, name in zip(keep, names, strict=True):
        problem = feature_name_problem(name)
        if problem is not None:  # the position: the name itself may not print safely
            raise TrainingDataError(f"column {i + 1}: a feature name {problem}")
    if len(set(names)) != len(names):
        raise TrainingDataError("two feature columns have the same name")
    cells: list[list[str]] = []
    labels: list[str] = []
    for line_no, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue  # blank lines are not data
        if len(record) != len(header):
            raise TrainingDataError(
                f"line {line_no} has {len(record)} fields, the header has {len(header)}"
            )
        label = record[t].strip()
        if not label:
            raise TrainingDataError(f"line {line_no}: target column {target!r} is empty")
        problem = label_problem(label)
        if problem is not None:  # the line, never the value: a label may be patient data
            raise TrainingDataError(f"line {line_no}: the target value {problem}; {RULE}")
        cells.append([record[i].strip() for i in keep])
        labels.append(label)
    if len(cells) < MIN_ROWS:
        raise TrainingDataError(f"need at least {MIN_ROWS} data rows, got {len(cells)}")
    return names, cells, labels


def _column(name: str, cells: Sequence[str], declared_category: bool) -> tuple[FeatureSpec, list]:
    """One column's spec and its values as served (float/NaN or str/None)."""
    present = [c for c in cells if c]
    if not present:
        raise TrainingDataError(f"column {name!r} has no values (every cell is empty)")
    nullable = len(present) < len(cells)
    numbers = None if declared_category else _numbers(name, cells)
    if numbers is None:
        categories = sorted(set(present))
        if len(categories) > MAX_CATEGORIES:
            raise TrainingDataError(
                f"column {name!r} has more than {MAX_CATEGORIES} distinct texts: "
                "an identifier or free text is not a feature"
            )
        if max(map(len, categories)) > MAX_CATEGORY_CHARS:
            raise TrainingDataError(
                f"column {name!r} holds a text longer than {MAX_CATEGORY_CHARS} characters"
            )
        spec = FeatureSpec(name, "category", nullable=nullable, categories=tuple(categories))
        return spec, [c if c else None for c in cells]
    finite = [v for v in numbers if not math.isnan(v)]
    kind = "integer" if all(_WHOLE.fullmatch(c) for c in present) else "number"
    return FeatureSpec(name, kind, min(finite), max(finite), nullable), numbers


def _numbers(name: str, cells: Sequence[str]) -> list[float] | None:
    """The column as floats (NaN for empty), or None if some cell is text (a category)."""
    out = []
    for line_no, cell in enumerate(cells, start=2):
        if not cell:
            out.append(math.nan)
            continue
        try:
            value = float(cell)
        except ValueError:
            return None
        if not math.isfinite(value):
            # Line numbers count data rows after the header (blank lines are skipped).
            raise TrainingDataError(
                f"data row {line_no - 1}: column {name!r} must be a finite number "
                "(NaN and infinity are not values; leave the cell empty if it is missing)"
            )
        out.append(value)
    return out
