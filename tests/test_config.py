"""Settings of the clinical metrics: read from the environment, unsafe values refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nexus_ml.config import Settings


def test_clinical_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().clinical_min_count, Settings().segment_max_groups) == (30, 16)
    monkeypatch.setenv("ML_CLINICAL_MIN_COUNT", "5")
    monkeypatch.setenv("ML_SEGMENT_MAX_GROUPS", "64")
    settings = Settings()
    assert (settings.clinical_min_count, settings.segment_max_groups) == (5, 64)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ML_CLINICAL_MIN_COUNT", "0"),  # a value from no rows at all
        ("ML_CLINICAL_MIN_COUNT", "-3"),
        ("ML_SEGMENT_MAX_GROUPS", "0"),
        ("ML_SEGMENT_MAX_GROUPS", "65"),  # more than a bundle can hold
        ("ML_SEGMENT_MAX_GROUPS", "many"),
    ],
)
def test_unusable_clinical_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("ML_").lower()):
        Settings()
