"""The `tq` command line (typer + rich).

```
tq list                                  workflows tq can see (built-ins, ./workflows/*.py, --file)
tq show NAME [--mermaid]                 a workflow's nodes and edges, or its Mermaid diagram
tq run NAME --input TEXT|@FILE           run it, with a live view; --json prints one JSON object
tq runs                                  runs in the store
tq resume RUN_ID                         finish a run that crashed or was interrupted
tq replay RUN_ID                         re-execute a run from its recorded model outputs; report divergence
tq model tiny PATH                       write a tiny random-weight Qwen checkpoint (smoke tests)
tq serve --model M                       OpenAI-compatible HTTP server over the local engine
```

Model: ``--model`` or ``$TQ_MODEL``, default ``Qwen/Qwen2.5-1.5B-Instruct``. Store: ``--store`` or
``$TQ_STORE``, default ``~/.local/share/tq-agents/runs.sqlite``. Exit codes: 0 done, 1 run failed or budget
hit, 2 usage error. Errors print one readable line (then the problems it lists, if any) plus a hint, never a
traceback (unless ``--debug``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tq_agents._cli_model import DEFAULT_MODEL, default_store_path
from tq_agents.errors import ConfigError, RunNotFoundError, UserError

app = typer.Typer(
    name="tq",
    help="tq-agents: typed multi-agent workflows on a local Qwen model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model_app = typer.Typer(help="Model utilities (tiny checkpoints for tests and benchmarks).", no_args_is_help=True)
app.add_typer(model_app, name="model")

_state = {"debug": False}

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store", envvar="TQ_STORE", help="Run store (SQLite file). Default: ~/.local/share/tq-agents/runs.sqlite"
    ),
]
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="Load workflows from this Python file too.")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar="TQ_MODEL",
        help=f"Hub id, local checkpoint path, or scripted:SCRIPT.json (tests). Default: {DEFAULT_MODEL}",
        show_default=False,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible server (vLLM, Ollama, tq serve), e.g. http://h:8000/v1"),
]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="TQ_API_KEY", help="API key for --base-url.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the live view.")]
JsonListOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one line) instead of text.")]
MaxTurnsOpt = Annotated[int | None, typer.Option("--max-turns", min=1, help="Stop after this many turns.")]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Token budget for the run.")]
DeadlineOpt = Annotated[float | None, typer.Option("--deadline", min=0.001, help="Wall-clock budget, seconds.")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


def _store_path(store: Path | None) -> Path:
    # --store and $TQ_STORE (which typer passes here as --store) expand '~' like the library's default does
    return store.expanduser() if store is not None else default_store_path()


@app.command()
def version() -> None:
    """Print the tq-agents version."""
    from tq_agents import __version__

    typer.echo(__version__)


@app.command("list")
def list_workflows(file: FileOpt = None) -> None:
    """List the workflows tq can run: built-ins, ./workflows/*.py and --file."""
    from rich.console import Console
    from rich.table import Table

    from tq_agents.workflows import available

    entries = sorted(available(file=file).values(), key=lambda e: e.name)
    console = Console()
    if not console.is_terminal:  # plain lines: name, source, description
        width = max(len(e.name) for e in entries)
        for e in entries:
            sys.stdout.write(f"{e.name:<{width}}  {e.source:<10}  {e.description}\n")
        return
    from rich.text import Text

    table = Table("name", "description", "source", box=None, header_style="bold")
    for entry in entries:  # user docstrings may hold brackets: literal text, not rich markup
        table.add_row(Text(entry.name), Text(entry.description), Text(entry.source))
    console.print(table)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Workflow name (see `tq list`).")],
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Print a Mermaid flowchart.")] = False,
    file: FileOpt = None,
) -> None:
    """Show a workflow's nodes and edges (or its Mermaid diagram)."""
    from tq_agents._cli_run import describe_workflow

    typer.echo(describe_workflow(name, file=file, mermaid=mermaid))


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="Workflow name (see `tq list`).")],
    input: Annotated[str, typer.Option("--input", "-i", help="The input text, or @FILE to read it from a file.")],
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    max_turns: MaxTurnsOpt = None,
    max_tokens: MaxTokensOpt = None,
    deadline: DeadlineOpt = None,
    file: FileOpt = None,
) -> None:
    """Run a workflow by name, with a live view of nodes, turns, tokens/s and tool calls."""
    from tq_agents._cli_run import run_command

    text = _read_input(input)
    code = run_command(
        name,
        text,
        model=model or DEFAULT_MODEL,
        base_url=base_url,
        api_key=api_key,
        store=_store_path(store),
        json_out=json_out,
        max_turns=max_turns,
        max_tokens=max_tokens,
        deadline=deadline,
        file=file,
    )
    raise typer.Exit(code)


@app.command()
def runs(
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many, newest first.")] = 20,
    json_out: JsonListOpt = False,
) -> None:
    """List the runs in the store, newest first."""
    from tq_agents._cli_run import runs_command

    runs_command(_store_path(store), limit=limit, json_out=json_out)


@app.command()
def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (see `tq runs`).")],
    store: StoreOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
    file: FileOpt = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Resume even though the process recorded as running it is still alive."),
    ] = False,
    max_turns: MaxTurnsOpt = None,
    max_tokens: MaxTokensOpt = None,
    deadline: DeadlineOpt = None,
) -> None:
    """Finish a run that crashed or was interrupted: completed turns are not re-run.

    It uses the model (and --base-url) the run was started with; --model switches to another model, which
    is then called at --base-url only if that is given too. The budgets are the recorded ones unless given:
    a run stopped by --max-turns/--max-tokens/--deadline continues with a larger one. A run that had ended
    (completed or failed) is shown as it ended; nothing runs again. A run still going in another live process
    on this host is refused (resuming it would run its turns twice); --force overrides.
    """
    from tq_agents._cli_run import resume_command

    source = ctx.get_parameter_source("model")  # typer's vendored click: compare the enum by name

    code = resume_command(
        run_id,
        _store_path(store),
        model=model,
        model_from_env=getattr(source, "name", "") == "ENVIRONMENT",
        base_url=base_url,
        api_key=api_key,
        json_out=json_out,
        file=file,
        force=force,
        max_turns=max_turns,
        max_tokens=max_tokens,
        deadline=deadline,
    )
    raise typer.Exit(code)


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="Run id (see `tq runs`).")],
    store: StoreOpt = None,
    json_out: JsonListOpt = False,
    file: FileOpt = None,
) -> None:
    """Re-execute a finished run with its recorded model outputs; report the first divergence."""
    from tq_agents._cli_run import replay_command

    raise typer.Exit(replay_command(run_id, _store_path(store), json_out=json_out, file=file))


@model_app.command("tiny")
def model_tiny(
    path: Annotated[Path, typer.Argument(help="Directory to write the checkpoint into.")],
    family: Annotated[str, typer.Option(help="qwen2.5 or qwen3")] = "qwen2.5",
    shape: Annotated[str, typer.Option(help="tiny, qwen2.5-0.5b or qwen3-0.6b")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed for the weights.")] = 0,
) -> None:
    """Write a random-weight Qwen checkpoint laid out like a real release (real Qwen tokenizer)."""
    path = path.expanduser()
    hint = "pass a new or existing directory that you can write to"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"cannot write a checkpoint to {path}: it exists and is not a directory", hint=hint)
    from tq_agents.models.qwen import build_tiny_checkpoint

    try:
        out = build_tiny_checkpoint(path, family=family, shape=shape, seed=seed)
    except OSError as e:
        raise ConfigError(f"cannot write a checkpoint to {path}: {e.strerror or e}", hint=hint) from None
    typer.echo(f"wrote {family} checkpoint ({shape}) to {out}")


@app.command()
def serve(
    model: Annotated[str, typer.Option("--model", envvar="TQ_MODEL", help="Hub id or local checkpoint path.")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    dtype: Annotated[str | None, typer.Option(help="fp32, bf16 or int8 (default: measured best).")] = None,
) -> None:
    """Serve an OpenAI-compatible HTTP API over the in-process Qwen engine."""
    from tq_agents.server import serve as _serve

    _serve(model=model, host=host, port=port, dtype=dtype)


def _read_input(value: str) -> str:
    if value.startswith("@"):
        p = Path(value[1:]).expanduser()
        try:
            text = p.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not part of the text
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"--input file {p} is not UTF-8 text (byte {e.start}: {e.reason})",
                hint="save the file as UTF-8, or pass the text inline with --input TEXT",
            ) from None
        except OSError as e:
            raise ConfigError(
                f"cannot read --input file {p}: {e.strerror or e}", hint="pass @PATH of a readable text file"
            ) from None
        if not text.strip():
            raise ConfigError(f"--input file {p} is empty", hint="put the input text in the file, or pass --input TEXT")
        return text
    if not value.strip():
        raise ConfigError("--input is empty", hint='pass the text, e.g. --input "Where is my order A1001?"')
    return value


def _fail(err: BaseException, code: int) -> None:
    message = (getattr(err, "message", None) or str(err)).strip()
    # every line: a multi-line message lists what is wrong (e.g. each problem of an invalid workflow)
    sys.stderr.write(f"error: {message or type(err).__name__}\n")
    hint = getattr(err, "hint", None)
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    elif code == 1 and not isinstance(err, UserError):
        sys.stderr.write("hint: run again with --debug for the full traceback\n")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the typer app and maps errors to exit codes (0 / 1 / 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("TQ_DEBUG") == "1"
    try:
        rv = app(args=args, prog_name="tq", standalone_mode=False)
        if isinstance(rv, int) and rv != 0:  # without standalone mode, click returns typer.Exit's code
            raise SystemExit(rv)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except typer.TyperException as e:  # click's UsageError & co. (typer vendors click)
        e.show()  # type: ignore[attr-defined]
        code = getattr(e, "exit_code", 2)
        raise SystemExit(2 if code not in (0, 1) else code) from None
    except Exception as e:  # one readable line, never a traceback
        if debug:
            raise
        _fail(e, 2 if isinstance(e, (UserError, RunNotFoundError)) else 1)


__all__ = ["app", "main"]


if __name__ == "__main__":  # python -m tq_agents.cli
    main()
