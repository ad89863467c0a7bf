"""No merge-conflict markers in any tracked text file (one reached the README once)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)


def test_no_tracked_file_holds_a_conflict_marker() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(files) > 100  # the listing worked
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".skops", ".gz"}:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        if MARKER.search(text):
            found.append(name)
    assert found == []
