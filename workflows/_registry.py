"""The workflow registry: how ``tq`` finds workflows by name.

Three sources, later ones win on a name clash:

1. built-ins (``plan-code-review``, ``translate-review``, ``support``);
2. ``./workflows/*.py`` in the current directory;
3. ``--file PATH``.

A workflow file registers factories with the ``@workflow`` decorator. A factory takes the chat model
the run should use and returns a ``Workflow``::

    from tq_agents import Agent, Workflow
    from tq_agents.workflows import workflow

    @workflow("haiku", description="Write a haiku about the input.")
    def haiku(model):
        poet = Agent("poet", instructions="Write a haiku about the user's text.", model=model)
        return Workflow("haiku").add_node(poet)
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tq_agents.errors import ConfigError

if TYPE_CHECKING:
    from tq_agents.models.base import ChatModel

__all__ = ["WorkflowEntry", "available", "get", "load_file", "workflow"]

Factory = Callable[["ChatModel"], Any]


@dataclass(frozen=True)
class WorkflowEntry:
    """A named workflow factory and where it came from."""

    name: str
    description: str
    factory: Factory
    source: str
    """``built-in`` or the path of the file that defined it."""

    def build(self, model: ChatModel) -> Any:
        """Build the workflow for ``model``."""
        return self.factory(model)


_REGISTRY: dict[str, WorkflowEntry] = {}
_current_source: list[str] = []
_builtins_loaded: list[bool] = []


def workflow(name: str, *, description: str = "") -> Callable[[Factory], Factory]:
    """Register ``fn(model) -> Workflow`` under ``name`` so that ``tq run NAME`` finds it.

    ``description`` defaults to the first line of the factory's docstring.
    """
    if not name or any(c.isspace() for c in name):
        raise ConfigError(f"bad workflow name {name!r}", hint="use a non-empty name without spaces, e.g. 'my-flow'")

    def deco(fn: Factory) -> Factory:
        desc = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        module = getattr(fn, "__module__", None) or "__main__"
        if _current_source:
            source = _current_source[-1]
        elif module.startswith("tq_agents.workflows."):
            source = "built-in"
        else:
            source = f"module {module}"
        _REGISTRY[name] = WorkflowEntry(name=name, description=desc, factory=fn, source=source)
        return fn

    return deco


def load_file(path: str | Path) -> list[str]:
    """Execute a workflow file and return the names it registered."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"workflow file not found: {p}", hint="pass the path of a .py file that uses @workflow")
    before = {k: v.factory for k, v in _REGISTRY.items()}
    mod_name = f"tq_user_workflows.{p.stem}_{abs(hash(str(p.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import workflow file {p}", hint="it must be a Python source file ending in .py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    _current_source.append(str(p))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise ConfigError(
            f"workflow file {p} failed to import: {type(e).__name__}: {e}",
            hint="run it with python to see the full error, or pass --debug",
        ) from e
    finally:
        _current_source.pop()
    names = [k for k, v in _REGISTRY.items() if before.get(k) is not v.factory]
    return names


def _load_builtins() -> None:
    if _builtins_loaded:
        return
    _builtins_loaded.append(True)
    import tq_agents.workflows.plan_code_review
    import tq_agents.workflows.support
    import tq_agents.workflows.translate_review  # noqa: F401


def _load_local_dir(cwd: Path | None = None) -> None:
    d = (cwd or Path.cwd()) / "workflows"
    if not d.is_dir():
        return
    # Running from the tq-agents checkout itself: ./workflows is the built-in package, not user files.
    if d.resolve() == Path(__file__).resolve().parent:
        return
    for f in sorted(d.glob("*.py")):
        if not f.name.startswith("_"):
            load_file(f)


def available(*, file: str | Path | None = None, cwd: Path | None = None) -> dict[str, WorkflowEntry]:
    """Every workflow ``tq`` can see: built-ins, ``./workflows/*.py``, then ``file``."""
    _load_builtins()
    _load_local_dir(cwd)
    if file is not None:
        names = load_file(file)
        if not names:
            raise ConfigError(
                f"{file} registers no workflow",
                hint="decorate a factory with @workflow('name') from tq_agents.workflows",
            )
    return dict(_REGISTRY)


def get(name: str, *, file: str | Path | None = None, cwd: Path | None = None) -> WorkflowEntry:
    """The workflow called ``name``; a ``ConfigError`` listing the known names when there is none."""
    entries = available(file=file, cwd=cwd)
    if name not in entries:
        raise ConfigError(
            f"unknown workflow {name!r}",
            hint=f"known workflows: {', '.join(sorted(entries))}; `tq list` shows them, --file PATH loads a file",
        )
    return entries[name]
