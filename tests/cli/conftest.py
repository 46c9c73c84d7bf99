"""Helpers for driving the real ``tq`` console script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TQ:
    """Runs ``tq`` with an isolated store, shop and data dir."""

    tmp: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 240, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).parent / "tq"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tq_agents.cli"]
        return subprocess.run(
            [*cmd, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=cwd or self.tmp,
        )

    def json(self, *args: str, timeout: float = 240) -> tuple[int, dict[str, Any]]:
        proc = self(*args, "--json", timeout=timeout)
        assert proc.stdout.strip(), f"no JSON on stdout; stderr:\n{proc.stderr}"
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, f"--json must print one line, got:\n{proc.stdout}"
        return proc.returncode, json.loads(lines[0])

    def script(self, name: str, steps: dict[str, list[Any]]) -> str:
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(steps, ensure_ascii=False), encoding="utf-8")
        return f"scripted:{path}"

    @property
    def store(self) -> Path:
        return Path(self.env["TQ_STORE"])

    @property
    def shop(self) -> Path:
        return Path(self.env["TQ_SHOP_DB"])


@pytest.fixture
def tq(tmp_path: Path) -> TQ:
    env = dict(os.environ)
    env.pop("TQ_MODEL", None)
    env.update(
        {
            "TQ_STORE": str(tmp_path / "runs.sqlite"),
            "TQ_SHOP_DB": str(tmp_path / "shop.db"),
            "XDG_DATA_HOME": str(tmp_path / "xdg"),
            "TQ_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "160",
        }
    )
    return TQ(tmp_path, env)
