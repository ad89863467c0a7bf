"""Why a bundle is refused: one exception type and a bounded set of reasons.

The reason is a metric label (``ml_model_load_failures_total{reason}``) and part of the health
report, so it is a small enum; the message beside it names files and fields, never a value.
"""

from __future__ import annotations

from typing import Literal, get_args

RefusalReason = Literal[
    "not_found",  # no CURRENT, no such version, or a file of the bundle is missing
    "path",  # a name, version or symlink that leaves the model folder or breaks the format
    "unsealed",  # a bundle written before manifests (format 1): seal it or retrain
    "integrity",  # a file differs from the manifest, or the folder holds files it does not list
    "untrusted",  # the artifact names a type outside the allowlist
    "artifact",  # the artifact is not a loadable skops file holding a Pipeline
    "metadata",  # metadata.json fails its typed model or its own consistency rules
    "structure",  # the pipeline's steps are not transformers ending in a probabilistic classifier
    "mismatch",  # the pipeline disagrees with the metadata (feature count, names, array shapes)
    "non_finite",  # a fitted number of the pipeline is NaN or infinite
    "probe",  # predictions on reference rows are not finite probabilities, or paths disagree
    "internal",  # an unexpected exception while loading (a bug, or input nobody foresaw)
    "invalid",  # any other refusal (e.g. the artifact's classes against the metadata's)
]
REFUSAL_REASONS: tuple[RefusalReason, ...] = get_args(RefusalReason)


class BundleError(Exception):
    """A bundle is missing, malformed, tampered with or not trusted; ``reason`` says which."""

    def __init__(self, message: str, reason: RefusalReason = "invalid") -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason


class NotEvaluable(ValueError):
    """Finite feature values on which the model's arithmetic overflows: it has no finite answer."""

    def __init__(self, row: int | None) -> None:
        super().__init__("feature values are outside what the model can evaluate")
        self.row = row  # index of the first such row of a batch, None if unknown
