"""Command-line options made from a lab program's config dataclass: one `--field-name` per field,
with the field's default and its `help` metadata, so the defaults live in one place.
Also the lab servers' shared ``--tls-max`` (the newest TLS version a server agrees to).
"""

from __future__ import annotations

import argparse
import dataclasses
import ssl
from collections.abc import Sequence

TLS_MAX = ("1.2", "1.3")
"""Allowed values of the lab servers' ``--tls-max``: the newest TLS version they agree to."""


def cap_tls(ctx: ssl.SSLContext, tls_max: str | None) -> ssl.SSLContext:
    """Cap a server context at ``tls_max`` (None: the library's newest, TLS 1.3 here)."""
    if tls_max is not None:
        if tls_max not in TLS_MAX:
            raise ValueError(f"--tls-max {tls_max!r}: allowed values are {', '.join(TLS_MAX)}")
        ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[tls_max]
    return ctx


def add_config_options(
    parser: argparse.ArgumentParser, cls: type, choices: dict[str, Sequence[str]] | None = None
) -> None:
    for f in dataclasses.fields(cls):
        opt, hlp = "--" + f.name.replace("_", "-"), f.metadata.get("help", "")
        if f.type in ("bool", bool):
            parser.add_argument(opt, action="store_true", help=hlp)
            continue
        typ = {"float": float, "int": int}.get(str(f.type).split(" ")[0], str)
        shown = "" if f.default is None else " [%(default)s]"
        parser.add_argument(opt, type=typ, default=f.default, help=hlp + shown,
                            choices=(choices or {}).get(f.name))
