"""The `tq` command line (typer + rich). Filled in by the CLI issue."""

from __future__ import annotations


def main() -> None:
    import typer

    app = typer.Typer(help="tq-agents command line")

    @app.command("version")
    def version() -> None:
        from tq_agents import __version__

        print(__version__)

    app()
