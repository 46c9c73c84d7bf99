"""The `tq` command line (typer + rich).

Exit codes: 0 done, 1 run failed or budget hit, 2 usage error. Errors print one readable line plus a
hint, never a traceback (unless ``--debug``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tq_agents.errors import UserError

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


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def version() -> None:
    """Print the tq-agents version."""
    from tq_agents import __version__

    typer.echo(__version__)


@model_app.command("tiny")
def model_tiny(
    path: Annotated[Path, typer.Argument(help="Directory to write the checkpoint into.")],
    family: Annotated[str, typer.Option(help="qwen2.5 or qwen3")] = "qwen2.5",
    shape: Annotated[str, typer.Option(help="tiny, qwen2.5-0.5b or qwen3-0.6b")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed for the weights.")] = 0,
) -> None:
    """Write a random-weight Qwen checkpoint laid out like a real release (real Qwen tokenizer)."""
    from tq_agents.models.qwen import build_tiny_checkpoint

    out = build_tiny_checkpoint(path, family=family, shape=shape, seed=seed)
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


def _fail(err: BaseException, code: int) -> None:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    sys.stderr.write(f"error: {first}\n")
    hint = getattr(err, "hint", None)
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    raise SystemExit(code)


def main() -> None:
    """Console-script entry point: runs the typer app and maps errors to exit codes."""
    debug = "--debug" in sys.argv
    try:
        app(standalone_mode=False)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(1) from None
    except Exception as e:  # one readable line, never a traceback
        import click

        if isinstance(e, click.UsageError):
            e.show()
            raise SystemExit(2) from None
        if isinstance(e, click.ClickException):
            e.show()
            raise SystemExit(e.exit_code) from None
        if debug:
            raise
        _fail(e, 2 if isinstance(e, UserError) else 1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None


__all__ = ["app", "main"]
