"""Command-line options made from a lab program's config dataclass: one `--field-name` per field,
with the field's default and its `help` metadata, so the defaults live in one place."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence


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
