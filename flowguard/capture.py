"""The one module that imports nfstream: capture sources in, flow records out.

Per-packet work stays in nfstream's engine (statistics, `splt_analysis`, timeouts): no NFPlugin is
used, since any plugin makes nfstream call Python for every packet. Training and triage read
captures through `read_flows` with the same `CaptureOptions`, so the model sees in production the
flows it was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from flowguard.errors import CaptureError, ConfigError
from flowguard.records import FlowRecord

ACCOUNTING_PAYLOAD = 3
"""Sizes are transport payload bytes: the same whatever the link type (Ethernet, cooked, raw IP),
and a bare TCP acknowledgement counts 0."""


@dataclass(frozen=True)
class CaptureOptions:
    """How nfstream cuts packets into flows. A model records the options it was trained with.

    idle_timeout: seconds without a packet after which a flow ends.
    active_timeout: seconds after which a long flow is exported as a window and a new one begins,
        so a mining session or a tunnel that lasts days still gets verdicts.
    splt_packets: how many first packets of each flow keep their size, direction and gap.
    """

    idle_timeout: int = 180
    active_timeout: int = 300
    splt_packets: int = 20

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "active_timeout", "splt_packets"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"capture option {name} must be a positive integer, got {value!r}")
        if self.splt_packets > 255:
            raise ConfigError(f"capture option splt_packets must be 1..255, got {self.splt_packets}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptureOptions:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def read_flows(source: str | os.PathLike[str], options: CaptureOptions) -> Iterator[FlowRecord]:
    """Yield the flows nfstream builds from a capture file (or interface name)."""
    from nfstream import NFStreamer

    try:
        streamer = NFStreamer(
            source=os.fspath(source),
            decode_tunnels=True,
            idle_timeout=options.idle_timeout,
            active_timeout=options.active_timeout,
            statistical_analysis=True,
            splt_analysis=options.splt_packets,
            n_dissections=20,
            n_meters=1,
            accounting_mode=ACCOUNTING_PAYLOAD,
        )
        yield from streamer
    except ValueError as exc:  # nfstream reports bad sources and engine errors as ValueError
        raise CaptureError(f"{os.fspath(source)}: {exc}") from exc


def library_versions() -> dict[str, str]:
    """Versions of the capture stack, recorded with a model."""
    import nfstream

    return {"nfstream": getattr(nfstream, "__version__", "unknown")}
