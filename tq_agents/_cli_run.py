"""What ``tq run`` / ``runs`` / ``resume`` / ``replay`` / ``show`` do, apart from argument parsing.

The live view reads the run's event stream (each event arrives once it is durable in the store): nodes with
their status and visits, the current turn, tokens and tokens/s of the last model call, tool calls. On a
terminal it is a ``rich`` live table on stderr; otherwise one plain line per finished turn and tool call.
The final summary (or, with ``--json``, one JSON object) goes to stdout. Text that comes from a model, a tool,
a program or the user is always printed literally, never parsed as ``rich`` markup.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tq_agents.errors import ConfigError, RunNotFoundError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from tq_agents.events import Event
    from tq_agents.graph import Workflow
    from tq_agents.messages import Message
    from tq_agents.models.base import ChatModel
    from tq_agents.scheduler import Run, RunResult
    from tq_agents.store import RunStore

__all__ = ["describe_workflow", "replay_command", "resume_command", "run_command", "runs_command"]

CLI_EVENT = "tq.cli"
"""Kind of the event ``tq run`` appends to a run's log: how it was invoked (workflow, file, model)."""


class _NoModel:
    """Stands in for the model where none may be called (``tq show``, ``tq replay``)."""

    model_name = "none"

    async def complete(self, request: Any) -> Any:
        raise ConfigError("this command does not call a model", hint="use `tq run` or `tq resume` to run agents")


# ---- helpers ----------------------------------------------------------------------------------------


def _build(name: str, model: ChatModel, file: Path | None) -> Workflow:
    from tq_agents.graph import Workflow
    from tq_agents.workflows import get

    entry = get(name, file=file)
    wf = entry.build(model)
    if not isinstance(wf, Workflow):
        raise ConfigError(
            f"workflow factory {name!r} ({entry.source}) returned {type(wf).__name__}, not a Workflow",
            hint="the @workflow function must return a tq_agents.Workflow",
        )
    return wf


_SQLITE_HEADER = b"SQLite format 3\x00"


def _store_flag(store: Path) -> str:
    """`` --store PATH`` for a command line to copy, unless ``store`` is the default one (then nothing)."""
    import shlex

    from tq_agents.store import default_store_path

    try:
        default = store.resolve() == default_store_path().resolve()
    except OSError:
        default = False
    return "" if default else f" --store {shlex.quote(str(store))}"


def _open_store(path: Path, *, must_exist: bool, readonly: bool = False) -> RunStore:
    """The run store at ``path``; ``readonly`` for the commands that only read it (``tq runs``, ``tq replay``):
    they work on read-only files and media and write nothing, not even a ``-wal``/``-shm`` file beside it."""
    from tq_agents.store import SQLiteRunStore

    if (must_exist or readonly) and not path.exists():
        raise ConfigError(f"no run store at {path}", hint="pass the --store used by `tq run` (or set TQ_STORE)")
    hint = "pass --store PATH (or set TQ_STORE) to a .sqlite file in a directory you can write to"
    if path.is_dir():
        raise ConfigError(f"run store {path} is a directory, not a file", hint=hint)
    if not readonly:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = "a file is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror or e
            raise ConfigError(
                f"cannot create run store {path}: {why} ({e.filename or path.parent})", hint=hint
            ) from None
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        head = b""  # a new store
    except OSError as e:
        raise ConfigError(f"cannot read run store {path}: {e.strerror or e}", hint=hint) from None
    if head and head != _SQLITE_HEADER:
        raise ConfigError(
            f"{path} is not a run store (not an SQLite database)",
            hint="pass the --store file `tq run` wrote (or set TQ_STORE), or a new path",
        )
    return SQLiteRunStore(path, readonly=readonly)


def _strict_json(obj: Any) -> str:
    """One line of JSON any parser reads: a non-finite float (a message may hold one) as the string
    ``"Infinity"``, ``"-Infinity"`` or ``"NaN"``, as ``Event.to_json`` writes it."""
    from tq_agents.events import strict_json

    return strict_json(json.dumps(obj, ensure_ascii=False))


def _message_json(msg: Message | None) -> dict[str, Any] | None:
    if msg is None:
        return None
    return {"type": msg.type_name, "source": msg.source, **msg.payload()}


def _message_text(msg: Message | None) -> str:
    if msg is None:
        return "(no output)"
    payload = msg.payload()
    if isinstance(payload.get("files"), dict) and payload["files"]:
        parts = [str(payload.get("summary", ""))]
        parts += [f"── {name}\n{body.rstrip()}" for name, body in payload["files"].items()]
        if payload.get("stdout"):
            parts.append(f"── stdout\n{str(payload['stdout']).rstrip()}")
        return "\n".join(p for p in parts if p)
    for key in ("reply", "text", "answer", "summary"):
        if isinstance(payload.get(key), str) and payload[key].strip():
            return payload[key]
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _result_json(result: RunResult, store: Path) -> dict[str, Any]:
    u = result.usage
    return {
        "run_id": result.run_id,
        "workflow": result.workflow,
        "status": result.status,
        "reason": result.reason,
        "turns": result.turns,
        "tokens": {"prompt": u.prompt_tokens, "completion": u.completion_tokens, "total": u.total_tokens},
        "duration_s": round(result.duration_s, 3),
        "final": _message_json(result.output),
        "store": str(store),
    }


def _exit_code(status: str) -> int:
    return 0 if status == "completed" else 1


# ---- live view --------------------------------------------------------------------------------------


class LiveView:
    """Folds run events into what the live view shows; renders a ``rich`` table."""

    def __init__(self, wf: Workflow, run_id: str) -> None:
        self.workflow = wf.name
        self.run_id = run_id
        self.nodes: dict[str, dict[str, Any]] = {
            s.name: {"kind": s.kind, "status": "waiting", "visits": 0, "note": ""} for s in wf.nodes()
        }
        self.turn = ""
        self.turns = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.tokens_per_s = 0.0
        self.tool_calls = 0
        self.last_tool = ""
        self.t0 = time.perf_counter()

    def update(self, ev: Event) -> str | None:
        """Apply ``ev``; return a plain log line for it, if it deserves one."""
        from tq_agents import events as E

        if isinstance(ev, E.NodeStarted):
            n = self.nodes.setdefault(ev.node, {"kind": "?", "status": "", "visits": 0, "note": ""})
            n["status"], n["visits"] = "running", ev.visit
            self.turn, self.turns = ev.turn_id, self.turns + 1
        elif isinstance(ev, E.ModelCallFinished):
            self.prompt_tokens += ev.prompt_tokens
            self.completion_tokens += ev.completion_tokens
            if ev.duration_s >= 0.005:  # instant (scripted or recorded) answers have no meaningful rate
                self.tokens_per_s = ev.tokens_per_s
        elif isinstance(ev, E.ToolCallStarted):
            self.tool_calls += 1
            args = json.dumps(ev.arguments, ensure_ascii=False)
            self.last_tool = f"{ev.node}: {ev.tool}({args[:60]})"
        elif isinstance(ev, E.ToolCallFinished):
            mark = "ok" if ev.ok else "error"
            return f"  tool  {ev.node}: {ev.tool} → {mark}"
        elif isinstance(ev, E.NodeFinished):
            n = self.nodes.setdefault(ev.node, {"kind": "?", "status": "", "visits": 0, "note": ""})
            n["status"] = ev.status
            routed = "→ " + ", ".join(t for t, _ in ev.routed) if ev.routed else ""
            n["note"] = ev.reason[:80] if ev.reason else routed
            tok = ev.prompt_tokens + ev.completion_tokens
            return f"  turn  {ev.turn_id:<18} {ev.status:<9} {ev.duration_s:6.2f}s {tok:>6} tok  {n['note']}"
        elif isinstance(ev, E.InputDropped) and ev.redirected_to:
            return f"  bound {ev.node}: visit bound reached → {ev.redirected_to}"
        elif isinstance(ev, E.RunFinished):
            return None
        return None

    def render(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        dt = time.perf_counter() - self.t0
        title = Text.assemble(
            (self.workflow, "bold"),
            f" · run {self.run_id} · turn {self.turns} ({self.turn or '-'}) · "
            f"{self.prompt_tokens}+{self.completion_tokens} tok · {self.tokens_per_s:.1f} tok/s · "
            f"{self.tool_calls} tool calls · {dt:.1f}s",
        )
        table = Table(title=title, title_justify="left", box=None, header_style="bold")
        for col in ("node", "kind", "status", "visits", ""):
            table.add_column(col)
        styles = {"running": "yellow", "completed": "green", "failed": "red"}
        for name, n in self.nodes.items():
            st = n["status"]
            table.add_row(
                Text(name),
                Text(n["kind"]),
                Text(st, style=styles.get(st, "dim")),
                str(n["visits"] or ""),
                Text(n["note"]),  # a failure reason can quote model output: literal text, not markup
            )
        if self.last_tool:
            table.caption = Text(f"last tool call: {self.last_tool}")
            table.caption_justify = "left"
        return table


async def _watch(run: Run, view: LiveView | None, console: Console | None) -> RunResult:
    if view is None or console is None:
        return await run.result()
    if console.is_terminal:
        from rich.live import Live

        with Live(view.render(), console=console, refresh_per_second=8, transient=False) as live:
            async for ev in run.events():
                view.update(ev)
                live.update(view.render())
    else:
        console.print(f"run {run.run_id} · workflow {view.workflow}", highlight=False, markup=False)
        async for ev in run.events():
            line = view.update(ev)
            if line:
                console.print(line, highlight=False, markup=False)
    return await run.result()


def _summary(result: RunResult, store: Path) -> None:
    """The human summary on stdout. The output, the reason and names are ``Text``: printed as they are,
    brackets and all (``print(xs[i])``, ``[/]``), never parsed as rich markup."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    u = result.usage
    style = "green" if result.status == "completed" else "red"
    head = Text.assemble(
        "status ",
        (result.status, style),
        f" · run {result.run_id} · {result.turns} turns · "
        f"{u.prompt_tokens}+{u.completion_tokens} tokens · {result.duration_s:.1f}s",
    )
    if result.reason:
        head.append(f"\nreason: {result.reason}")
    out = result.output
    body = Text(_message_text(out))
    if result.status == "completed" or out is None:
        title = Text(f"{result.workflow} → {out.type_name if out else 'no output'}")
    else:  # not an answer: what the run had got to when it stopped
        title = Text(f"{result.workflow}: last message before it stopped ({out.type_name} from {out.source})")
    console = Console(highlight=False)
    console.print(head)
    console.print(Panel(body, title=title, title_align="left", expand=False))
    flag = _store_flag(store)
    footer = f"store {store} · tq replay {result.run_id}{flag}"
    if result.status in ("cancelled", "deadline", "max_turns", "max_tokens"):
        more = {"max_turns": " --max-turns N", "max_tokens": " --max-tokens N", "deadline": " --deadline S"}
        footer += f" · continue: tq resume {result.run_id}{flag}{more.get(result.status, '')}"
    console.print(Text(footer, style="dim"))


def _stderr_console(json_out: bool) -> Console | None:
    if json_out:
        return None
    from rich.console import Console

    return Console(stderr=True, highlight=False)


# ---- commands ---------------------------------------------------------------------------------------


def describe_workflow(name: str, *, file: Path | None = None, mermaid: bool = False) -> str:
    """``tq show``: the Mermaid diagram, or a plain listing of nodes and edges."""
    wf = _build(name, _NoModel(), file)  # type: ignore[arg-type]
    wf.validate()
    if mermaid:
        return wf.to_mermaid()
    lines = [f"{wf.name}: {wf.description}".rstrip(": "), "", "nodes:"]
    entries = set(wf.entry_nodes())
    for s in wf.nodes():
        out = "/".join(t.type_name for t in s.output_types)
        extra = []
        if s.name in entries:
            extra.append("entry")
        if s.max_visits:
            extra.append(f"max {s.max_visits} visits" + (f", then → {s.on_exhausted}" if s.on_exhausted else ""))
        if s.agent is not None and s.agent.tools:
            extra.append("tools: " + ", ".join(s.agent.tools))
        lines.append(f"  {s.name:<14} {s.kind:<8} → {out}" + (f"  ({'; '.join(extra)})" if extra else ""))
    lines.append("edges:")
    for e in wf.edges():
        cond = f"  [{e.label}]" if e.label else ("  [conditional]" if e.condition else "")
        lines.append(f"  {e.source} → {e.target}{cond}")
    return "\n".join(lines)


def run_command(
    name: str,
    text: str,
    *,
    model: str,
    base_url: str | None,
    api_key: str | None,
    store: Path,
    json_out: bool,
    max_turns: int | None,
    max_tokens: int | None,
    deadline: float | None,
    file: Path | None,
) -> int:
    """``tq run``: build the model and workflow, run with the live view, print the summary; the exit code."""
    from tq_agents._cli_model import resolve_model
    from tq_agents.scheduler import run_main
    from tq_agents.workflows import get

    get(name, file=file)  # an unknown workflow is reported as such, before a model is looked for
    chat_model = resolve_model(model, base_url=base_url, api_key=api_key)
    wf = _build(name, chat_model, file)
    st = _open_store(store, must_exist=False)
    invocation = {
        "workflow": name,
        "file": str(Path(file).resolve()) if file else None,
        "model": model,
        "base_url": base_url,
    }

    started: list[str] = []

    async def go() -> RunResult:
        run = wf.start(text, store=st, max_turns=max_turns, max_tokens=max_tokens, deadline_s=deadline)
        started.append(run.run_id)
        st.append(run.run_id, CLI_EVENT, invocation)
        console = _stderr_console(json_out)
        view = LiveView(wf, run.run_id) if console is not None else None
        return await _watch(run, view, console)

    try:
        result = run_main(go)
    except KeyboardInterrupt:
        if started:  # the log holds every completed turn: the run can be finished later
            sys.stderr.write(
                f"interrupted: run {started[0]} can be finished with `tq resume {started[0]}{_store_flag(store)}`\n"
            )
        raise
    finally:
        st.close()
    if json_out:
        sys.stdout.write(_strict_json(_result_json(result, store)) + "\n")
    else:
        _summary(result, store)
    return _exit_code(result.status)


def runs_command(store: Path, *, limit: int, json_out: bool) -> None:
    """``tq runs``: the runs in the store, newest first."""
    if not store.exists():
        sys.stdout.write("[]\n" if json_out else f"no runs in {store} (no store yet)\n")
        return
    st = _open_store(store, must_exist=True, readonly=True)
    try:
        runs = st.list_runs(limit=limit)
    finally:
        st.close()
    if json_out:
        rows = [
            {
                "run_id": r.run_id,
                "workflow": r.workflow,
                "status": r.status,
                "created_at": r.created_at,
                "input": r.meta.get("input", ""),
            }
            for r in runs
        ]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not runs:
        console.print(f"no runs in {store}", markup=False)
        return
    if not console.is_terminal:  # plain, one run per line: easy to grep and cut
        for r in runs:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
            text = str(r.meta.get("input", "")).replace("\n", " ")[:60]
            sys.stdout.write(f"{r.run_id}  {r.workflow:<16} {r.status:<10} {started}  {text}\n")
        return
    table = Table("run id", "workflow", "status", "started", "input", box=None, header_style="bold")
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
        text = str(r.meta.get("input", "")).replace("\n", " ")
        table.add_row(r.run_id, Text(r.workflow), r.status, started, Text(text[:60]))  # user text: no markup
    console.print(table)


def _invocation(st: RunStore, run_id: str) -> dict[str, Any]:
    try:
        st.get_run(run_id)
    except RunNotFoundError as e:
        raise RunNotFoundError(
            f"no run {run_id!r} in the store", hint="`tq runs --store PATH` lists the run ids it holds"
        ) from e
    for ev in st.load_events(run_id):
        if ev.kind == CLI_EVENT:
            return dict(ev.payload)
    return {}


def resume_command(
    run_id: str,
    store: Path,
    *,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    json_out: bool,
    file: Path | None = None,
    model_from_env: bool = False,
    force: bool = False,
    max_turns: int | None = None,
    max_tokens: int | None = None,
    deadline: float | None = None,
) -> int:
    """``tq resume``: finish an interrupted run with the workflow and model it was started with.

    The recorded ``--base-url`` goes with the recorded model only: an explicit ``--model`` (or a ``$TQ_MODEL``
    other than the recorded one) is a switch to another model, called at ``base_url`` if that is given and
    resolved like ``tq run --model`` (scripted, local checkpoint, hub id) otherwise.
    """
    from tq_agents._cli_model import DEFAULT_MODEL, resolve_model
    from tq_agents.scheduler import run_main, start_resume

    st = _open_store(store, must_exist=True)
    try:
        inv = _invocation(st, run_id)
        info = st.get_run(run_id)
        recorded = inv.get("model")
        spec = model or recorded or DEFAULT_MODEL
        switched = (model is not None and not model_from_env) or spec != recorded
        url = base_url if base_url else (None if switched else inv.get("base_url"))
        chat_model = resolve_model(spec, base_url=url, api_key=api_key)
        wf_file = file or (Path(inv["file"]) if inv.get("file") else None)
        wf = _build(inv.get("workflow") or info.workflow, chat_model, wf_file)

        async def go() -> RunResult:
            run = start_resume(
                run_id,
                wf,
                st,
                model=chat_model,
                force=force,
                max_turns=max_turns,
                max_tokens=max_tokens,
                deadline_s=deadline,
            )
            if run._result is not None and run.status in ("completed", "failed"):  # ended before: nothing re-run
                failed = run.status == "failed"
                why = ": a failed run cannot be resumed, start a new one with `tq run`" if failed else ""
                sys.stderr.write(f"run {run_id} had already ended ({run.status}); nothing was run again{why}\n")
            console = _stderr_console(json_out)
            view = LiveView(wf, run_id) if console is not None else None
            return await _watch(run, view, console)

        try:
            result = run_main(go)
        except KeyboardInterrupt:  # stopped again: resumable again
            again = f"tq resume {run_id}{_store_flag(store)}"
            sys.stderr.write(f"interrupted: run {run_id} can be finished with `{again}`\n")
            raise
    finally:
        st.close()
    if json_out:
        sys.stdout.write(_strict_json(_result_json(result, store)) + "\n")
    else:
        _summary(result, store)
    return _exit_code(result.status)


def replay_command(run_id: str, store: Path, *, json_out: bool, file: Path | None = None) -> int:
    """``tq replay``: re-execute from the record; exit 0 when it reproduces the run, 1 on divergence."""
    from tq_agents._replay import replay

    st = _open_store(store, must_exist=True, readonly=True)  # the replay is recorded in memory, not here
    try:
        inv = _invocation(st, run_id)
        info = st.get_run(run_id)
        wf_file = file or (Path(inv["file"]) if inv.get("file") else None)
        wf = _build(inv.get("workflow") or info.workflow, _NoModel(), wf_file)  # type: ignore[arg-type]
        report = asyncio.run(replay(run_id, wf, st))
    finally:
        st.close()
    div = report.divergence
    if json_out:
        out = {
            "run_id": run_id,
            "replay_run_id": report.replay_run_id,
            "status": report.status,
            "recorded_status": report.recorded_status,
            "turns_compared": report.turns_compared,
            "diverged": div is not None,
            "divergence": None
            if div is None
            else {"turn_id": div.turn_id, "what": div.what, "expected": div.expected, "actual": div.actual},
        }
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    elif div is None:
        sys.stdout.write(
            f"replay of {run_id}: no divergence ({report.turns_compared} turns compared, "
            f"status {report.status}, recorded {report.recorded_status})\n"
        )
    else:
        sys.stdout.write(f"replay of {run_id}: DIVERGED at {div}\n")
    return 0 if div is None else 1
