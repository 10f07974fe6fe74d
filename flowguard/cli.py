"""The `flowguard` command. The only place that prints for people and turns errors into exit codes.

Exit codes: 0 every input was read; 1 some input could not be read (each named on stderr);
2 usage or configuration errors (bad option, unusable model, unwritable output).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flowguard import __version__
from flowguard.errors import FlowguardError, ModelError
from flowguard.model import FlowClassifier, default_model_dir
from flowguard.output import make_writer
from flowguard.triage import FileDone, expand_inputs, triage

EXIT_OK, EXIT_INPUT, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    help="flowguard: flags stratum mining and reverse tunnels in mirrored traffic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Inspect models.", no_args_is_help=True)
app.add_typer(model_app, name="model")
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"flowguard: error: {message}", markup=False)
    return typer.Exit(code)


def _load_model(model: Path | None) -> FlowClassifier:
    try:
        return FlowClassifier.load(model if model is not None else default_model_dir())
    except ModelError as exc:
        raise _fail(f"--model: {exc}", EXIT_USAGE) from exc


@app.command("triage")
def triage_cmd(
    paths: Annotated[
        list[Path], typer.Argument(help="Capture files (pcap, pcapng) or directories of them.")
    ],
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="table (people), jsonl or csv (machines).")
    ] = Format.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Model directory [default: bundled].")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Progress bar on stderr (shown only on a terminal).")
    ] = True,
) -> None:
    """Classify every flow in capture files: stratum_mining, reverse_tunnel or benign."""
    classifier = _load_model(model)
    try:
        stream: TextIO = (
            output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        )
    except OSError as exc:
        raise _fail(f"--output: {output}: {exc.strerror or exc}", EXIT_USAGE) from exc
    writer = make_writer(fmt.value, stream)
    failed = 0
    inputs = [p for p, _ in expand_inputs(paths)]
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[flows]} flows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not (progress and err.is_terminal),
    )
    try:
        with bar:
            task = bar.add_task("triage", total=len(inputs), flows=0)
            flows = 0
            for event in triage(paths, classifier):
                if isinstance(event, FileDone):
                    if event.error:
                        failed += 1
                        err.print(f"flowguard: {event.pcap}: {event.error}", markup=False)
                    writer.file_done(event)
                    bar.advance(task)
                else:
                    writer.write(event)
                    flows += len(event)
                    bar.update(task, flows=flows)
        writer.close()
    except BrokenPipeError:  # `flowguard triage ... | head`: the reader left, which is fine
        sys.stderr.close()
        raise typer.Exit(EXIT_OK) from None
    except FlowguardError as exc:
        raise _fail(str(exc), EXIT_INPUT) from exc
    finally:
        if output:
            stream.close()
    raise typer.Exit(EXIT_INPUT if failed else EXIT_OK)


@model_app.command("info")
def model_info(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Model directory [default: bundled].")
    ] = None,
) -> None:
    """Print a model's metadata (after checking it) as JSON."""
    classifier = _load_model(model)
    meta = classifier.metadata.to_dict()
    meta["path"] = str(classifier.path)
    typer.echo(json.dumps(meta, indent=2))


@app.command("version")
def version_cmd() -> None:
    """Print flowguard's version."""
    typer.echo(__version__)


def main() -> None:
    app()
