"""The package ships exactly one import name, and every subpackage on disk is declared."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_declared() -> None:
    cfg = _config()
    package_dir: dict[str, str] = cfg["package-dir"]
    declared = set(cfg["packages"])
    on_disk: set[str] = set()
    for name, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if any(part in {"__pycache__", ".venv"} for part in init.parts):
                continue
            rel = init.parent.relative_to(base)
            dotted = ".".join([name, *rel.parts]) if rel.parts else name
            # a sub-folder that is itself mapped elsewhere is handled by its own entry
            on_disk.add(dotted)
    missing = sorted(on_disk - declared)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_one_top_level_import_name() -> None:
    cfg = _config()
    tops = {p.split(".")[0] for p in cfg["packages"]}
    assert tops == {"tq_agents"}


def test_torch_is_pinned_wherever_it_is_required() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    torch_reqs = [r for r in reqs if r.replace(" ", "").lower().startswith("torch") and not r.startswith("torchao")]
    assert torch_reqs, "torch must be declared (pinned) in an extra"
    assert all("==2.13.0" in r for r in torch_reqs), torch_reqs
