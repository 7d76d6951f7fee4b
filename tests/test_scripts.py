"""The operator scripts run from a checkout, on both databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_demo_drives_a_run_to_completion(blank_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "demo.py"), "--url", blank_url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert "status completed" in lines[1]
    assert [line.split()[:3] for line in lines[3:]] == [
        ["extract", "completed", "1.00"],
        ["transform", "completed", "1.00"],
        ["load", "completed", "1.00"],
    ]
