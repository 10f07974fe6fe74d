"""The `flowguard` command. The only place that prints for people and turns errors into exit codes.

Exit codes: 0 every input was read; 1 some input could not be read (each named on stderr), or
`--publish` failed; 2 usage or configuration errors (bad option or setting, unusable model,
unwritable output, unusable database or firewall).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flowguard import __version__
from flowguard.errors import ConfigError, FlowguardError, ModelError, PredictorError, PublishError
from flowguard.hosts import HostView
from flowguard.model import FlowClassifier, default_model_dir
from flowguard.output import make_writer
from flowguard.triage import FileDone, FlowVerdict, expand_inputs, triage

if TYPE_CHECKING:  # the service's modules load pydantic and httpx: only commands that use them
    from flowguard.config import Settings
    from flowguard.live import LiveSource
    from flowguard.publish import Publisher

EXIT_OK, EXIT_INPUT, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    help="flowguard: flags stratum mining and reverse tunnels in mirrored traffic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Inspect models.", no_args_is_help=True)
app.add_typer(model_app, name="model")
config_app = typer.Typer(help="Inspect the service's settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"flowguard: error: {message}", markup=False)
    return typer.Exit(code)


class Predictor(str, Enum):
    auto = "auto"
    compiled = "compiled"
    lightgbm = "lightgbm"


def _load_model(model: Path | None, live: bool = False, lazy: bool = False,
                predictor: Predictor = Predictor.auto, eager_tunnels: bool = False) -> FlowClassifier:
    """The model at `model` (else the bundled one); `live`: its booster for live windows; `lazy`,
    `predictor`, `eager_tunnels`: see FlowClassifier.load."""
    try:
        return FlowClassifier.load(model if model is not None else default_model_dir(), live=live,
                                   lazy=lazy, predictor=predictor.value,
                                   eager_tunnels=eager_tunnels)
    except ModelError as exc:
        raise _fail(_model_error(exc), EXIT_USAGE) from exc


def _model_error(exc: ModelError) -> str:
    """The message, under the option it is about."""
    return f"--predictor: {exc.detail}" if isinstance(exc, PredictorError) else f"--model: {exc}"


ModelOption = Annotated[
    Path | None, typer.Option("--model", "-m", help="Model directory [default: bundled].")
]
PredictorOption = Annotated[
    Predictor,
    typer.Option("--predictor", envvar="FLOWGUARD_PREDICTOR",
                 help="compiled: the model's trees compiled to machine code (lleaves), about 4x faster "
                      "than lightgbm, same scores; auto: compiled where it can be."),
]


EagerTunnelsOption = Annotated[
    bool, typer.Option("--eager-tunnels",
                       help="Flag reverse tunnels on the model's verdict alone. By default a tunnel "
                            "verdict stands only once its connection behaves as a tunnel: an "
                            "exchange begun by the outside end, or keepalives alone. Eager: idle "
                            "tunnels without keepalives are flagged too, and so is SSH automation. "
                            "Judged with the thresholds the model chose for it, where it has them.")
]


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
    model: ModelOption = None,
    predictor: PredictorOption = Predictor.auto,
    progress: Annotated[
        bool, typer.Option(help="Progress bar on stderr (shown only on a terminal).")
    ] = True,
    hosts: Annotated[
        Path | None,
        typer.Option("--hosts", help="Also write the per-host summary (JSON) to this file."),
    ] = None,
    publish: Annotated[
        str | None,
        typer.Option(
            "--publish",
            metavar="URL",
            help="Also POST the verdicts to a flowguard service at URL, with the key in "
            "FLOWGUARD_API_KEY (the output is unchanged).",
        ),
    ] = None,
    eager_tunnels: EagerTunnelsOption = False,
) -> None:
    """Classify every flow in capture files: stratum_mining, reverse_tunnel or benign."""
    classifier = _load_model(model, lazy=True, predictor=predictor, eager_tunnels=eager_tunnels)
    publisher: Publisher | None = None
    if publish is not None:
        from flowguard.publish import Publisher

        try:
            publisher = Publisher(publish, os.environ.get("FLOWGUARD_API_KEY"))
        except PublishError as exc:
            raise _fail(str(exc), EXIT_USAGE) from exc
    publish_error: PublishError | None = None
    try:
        stream: TextIO = (
            output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        )
    except OSError as exc:
        raise _fail(f"--output: {output}: {exc.strerror or exc}", EXIT_USAGE) from exc
    writer = make_writer(fmt.value, stream)
    host_view = HostView()
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
            for event in triage(paths, classifier, eager_tunnels=eager_tunnels):
                if isinstance(event, FileDone):
                    if event.error:
                        failed += 1
                        err.print(f"flowguard: {event.pcap}: {event.error}", markup=False)
                    writer.file_done(event)
                    bar.advance(task)
                else:
                    writer.write(event)
                    host_view.add(event)
                    flows += len(event)
                    bar.update(task, flows=flows)
                    if publisher is not None and publish_error is None:
                        try:
                            publisher.add(event)
                        except PublishError as exc:  # told once at the end; triage goes on
                            publish_error = exc
        writer.close()
        if publisher is not None and publish_error is None:
            try:
                publisher.flush()
            except PublishError as exc:
                publish_error = exc
        if hosts:
            summaries = [h.to_dict() for h in host_view.summaries()]
            hosts.write_text(json.dumps(summaries, indent=1) + "\n")
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # `flowguard triage ... | head`: the reader left
            sys.stderr.close()
            raise typer.Exit(EXIT_OK) from None
        raise _fail(f"{exc.filename or 'output'}: {exc.strerror or exc}", EXIT_USAGE) from exc
    except ModelError as exc:  # the trees of a lazily loaded model are read at the first flow
        raise _fail(_model_error(exc), EXIT_USAGE) from exc
    except FlowguardError as exc:
        raise _fail(str(exc), EXIT_INPUT) from exc
    finally:
        if output:
            stream.close()
        if publisher is not None:
            publisher.close()
    if publish_error is not None:
        err.print(f"flowguard: error: {publish_error}", markup=False)
    raise typer.Exit(EXIT_INPUT if failed or publish_error else EXIT_OK)


@model_app.command("info")
def model_info(
    model: ModelOption = None,
) -> None:
    """Print a model's metadata (after checking it) as JSON."""
    classifier = _load_model(model, predictor=Predictor.lightgbm)  # LightGBM reads it: checked
    meta = classifier.metadata.to_dict()
    meta["path"] = str(classifier.path)
    typer.echo(json.dumps(meta, indent=2))


def _settings(config: Path | None, **flags: object) -> Settings:
    from flowguard.config import load_settings

    try:
        return load_settings(config, flags)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_USAGE) from exc


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (or set FLOWGUARD_CONFIG).", show_default=False),
]


InterfaceOption = Annotated[
    str | None, typer.Option("--interface", "-i", help="Capture live on this interface (SPAN/TAP port).")
]
BpfOption = Annotated[str | None, typer.Option("--bpf", help="BPF filter for the live capture.")]
SnaplenOption = Annotated[int, typer.Option("--snaplen", min=64, max=65535, help="Bytes kept per packet.")]
PromiscOption = Annotated[
    bool, typer.Option("--promisc/--no-promisc", help="Put the interface in promiscuous mode.")
]
ActiveTimeoutOption = Annotated[
    int, typer.Option("--active-timeout", min=1, max=3600,
                      help="Seconds after which a live flow is exported as a window and classified.")
]
BufferOption = Annotated[
    int, typer.Option("--buffer-mib", min=1, max=2047,
                      help="Kernel capture buffer (MiB): what absorbs bursts.")
]
IdleTimeoutOption = Annotated[
    int, typer.Option("--idle-timeout", min=1, max=3600,
                      help="Seconds of silence after which a live flow's window is exported.")
]
OpeningTimeoutOption = Annotated[
    int | None, typer.Option("--opening-timeout", min=0, max=3600, show_default=False,
                             help="Seconds after which a connection's first window is exported (at "
                                  "most --active-timeout; 0: like any window). Default: the "
                                  "model's own, from the windows it learned from.")
]


def _live_source(interface: str, bpf: str | None, snaplen: int, promisc: bool,
                 active_timeout: int, idle_timeout: int, buffer_mib: int,
                 opening_timeout: int | None) -> LiveSource:
    from flowguard.live import LiveSource

    return LiveSource(interface, bpf, snaplen, promisc, active_timeout, idle_timeout=idle_timeout,
                      buffer_bytes=buffer_mib << 20, opening_timeout=opening_timeout)


@app.command("watch")
def watch_cmd(
    interface: Annotated[str, typer.Option("--interface", "-i", help="Interface to capture on.")],
    bpf: BpfOption = None,
    snaplen: SnaplenOption = 1536,
    promisc: PromiscOption = True,
    active_timeout: ActiveTimeoutOption = 5,
    idle_timeout: IdleTimeoutOption = 2,
    opening_timeout: OpeningTimeoutOption = None,
    buffer_mib: BufferOption = 64,
    eager_tunnels: EagerTunnelsOption = False,
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="jsonl or csv (table is for triage only).")
    ] = Format.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Append verdicts here instead of stdout.")
    ] = None,
    publish: Annotated[
        str | None,
        typer.Option("--publish", metavar="URL",
                     help="Also POST the verdicts to a flowguard service at URL (key in FLOWGUARD_API_KEY)."),
    ] = None,
    quiet_benign: Annotated[
        bool, typer.Option("--flagged-only", help="Write only flagged verdicts (all are published).")
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port (127.0.0.1).")
    ] = None,
    model: ModelOption = None,
    predictor: PredictorOption = Predictor.auto,
) -> None:
    """Classify live traffic on an interface; verdicts within seconds. Stops on SIGTERM/SIGINT."""
    import signal
    import threading

    from flowguard.live import LiveMetrics, LivePipeline

    if fmt is Format.table:
        raise _fail("--format table is not available for watch: use jsonl or csv", EXIT_USAGE)
    classifier = _load_model(model, live=True, predictor=predictor, eager_tunnels=eager_tunnels)
    source = _live_source(interface, bpf, snaplen, promisc, active_timeout, idle_timeout, buffer_mib,
                          opening_timeout)
    publisher: Publisher | None = None
    if publish is not None:
        from flowguard.publish import Publisher

        try:
            publisher = Publisher(publish, os.environ.get("FLOWGUARD_API_KEY"),
                                  source=f"watch@{interface}")
        except PublishError as exc:
            raise _fail(str(exc), EXIT_USAGE) from exc
    try:
        stream: TextIO = output.open("a", encoding="utf-8", newline="") if output else sys.stdout
    except OSError as exc:
        raise _fail(f"--output: {output}: {exc.strerror or exc}", EXIT_USAGE) from exc
    writer = make_writer(fmt.value, stream)

    def write(batch: list[FlowVerdict]) -> None:
        shown = [v for v in batch if v.verdict != "benign"] if quiet_benign else batch
        if shown:
            writer.write(shown)
            stream.flush()  # whole lines only, and at once: someone is tailing this

    def send(batch: list[FlowVerdict]) -> None:
        assert publisher is not None
        publisher.add(batch)
        publisher.flush()  # live verdicts go out now, not when 500 have gathered

    sinks = [write] + ([send] if publisher is not None else [])
    metrics = LiveMetrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    pipeline = LivePipeline(source, classifier, sinks, metrics, eager_tunnels=eager_tunnels)
    stop = threading.Event()
    main_pid = os.getpid()

    def on_signal(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # nfstream's meter, forked after this was installed: just end
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipeline.start()
    err.print(f"flowguard: capturing on {interface} "
              f"({source.options(classifier.metadata.capture).describe_windows()}); "
              "SIGTERM or Ctrl-C stops", markup=False)
    try:
        while not stop.wait(0.5):
            if pipeline.wait(0):
                break
        pipeline.stop()
        writer.close()
    except OSError as exc:
        raise _fail(f"{exc.filename or 'output'}: {exc.strerror or exc}", EXIT_USAGE) from exc
    finally:
        if output:
            stream.close()
        if publisher is not None:
            publisher.close()
    err.print(f"flowguard: capture stopped: {pipeline.flows} flows, {pipeline.verdicts} verdicts, "
              f"{pipeline.stats.packets} packets, {pipeline.stats.dropped} kernel drops", markup=False)
    if pipeline.error is not None:
        raise _fail(str(pipeline.error), EXIT_INPUT)
    raise typer.Exit(EXIT_OK)


@app.command("serve")
def serve_cmd(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: the host setting, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port (default: the port setting, 8080).")
    ] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Accept writes without a key (labs only).")
    ] = False,
    interface: InterfaceOption = None,
    bpf: BpfOption = None,
    snaplen: SnaplenOption = 1536,
    promisc: PromiscOption = True,
    active_timeout: ActiveTimeoutOption = 5,
    idle_timeout: IdleTimeoutOption = 2,
    opening_timeout: OpeningTimeoutOption = None,
    buffer_mib: BufferOption = 64,
    eager_tunnels: EagerTunnelsOption = False,
) -> None:
    """Run the verdict service: stores verdicts, decides blocks, serves pull lists.
    With --interface it also captures there and ingests its own verdicts (no HTTP)."""
    settings = _settings(config, host=host, port=port, insecure_no_auth=insecure_no_auth or None)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from flowguard.service import create_app  # FastAPI is only needed here

    try:
        service_app = create_app(settings)
        service_app.state.service.start()
    except FlowguardError as exc:  # ConfigError, StoreError, ModelError, FirewallError
        raise _fail(str(exc), EXIT_USAGE) from exc
    if not settings.api_keys and not settings.insecure_no_auth:
        err.print("flowguard: warning: no API keys configured, so writes are refused; "
                  "set FLOWGUARD_API_KEYS (see docs/service.md)", markup=False)
    import uvicorn

    pipeline = None
    if interface is not None:
        from flowguard.service.live import attach_capture

        source = _live_source(interface, bpf, snaplen, promisc, active_timeout, idle_timeout,
                              buffer_mib, opening_timeout)
        classifier = _load_model(settings.model, live=True, predictor=Predictor(settings.predictor),
                                 eager_tunnels=eager_tunnels)
        pipeline = attach_capture(service_app.state.service, source, classifier,
                                  eager_tunnels=eager_tunnels)
        pipeline.start()
        err.print(f"flowguard: capturing on {interface} "
                  f"({source.options(classifier.metadata.capture).describe_windows()})", markup=False)
    try:
        uvicorn.run(service_app, host=settings.host, port=settings.port, log_level=settings.log_level)
    finally:
        if pipeline is not None:  # uvicorn has handled SIGTERM/SIGINT: classify what was captured
            pipeline.stop()
            err.print(f"flowguard: capture stopped: {pipeline.flows} flows, "
                      f"{pipeline.verdicts} verdicts, {pipeline.stats.dropped} kernel drops", markup=False)


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective settings (defaults < file < FLOWGUARD_* env) as TOML, keys redacted."""
    from flowguard.config import redacted

    settings = _settings(config)
    for name, value in redacted(settings).items():
        if value is None:
            typer.echo(f"# {name} is not set")
        else:
            typer.echo(f"{name} = {json.dumps(value)}")


@app.command("version")
def version_cmd() -> None:
    """Print flowguard's version."""
    typer.echo(__version__)


def main() -> None:
    app()
