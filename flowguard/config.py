"""The service's settings: defaults < a TOML file < FLOWGUARD_* environment variables < command-line flags.

    settings = load_settings(config_file="flowguard.toml", overrides={"port": 9000})
    settings.port, settings.threshold_for("stratum_mining", model_thresholds)

`SETTINGS` lists every setting as (name, env, default, help); docs/service.md mirrors it and a test
checks that they agree. A bad value raises ConfigError naming the setting, the values it allows and
where the bad value came from. API keys are kept only as sha256 digests ("sha256:<hex>").
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from flowguard.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "FLOWGUARD_"
CONFIG_ENV = "FLOWGUARD_CONFIG"
BLOCKING_CLASSES = ("stratum_mining", "reverse_tunnel")
"""The verdict classes that lead to decisions (every class but benign)."""

ALWAYS_ALLOWED = ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10")
"""Never blocked, whatever the settings: loopback and link-local, IPv4 and IPv6."""

MIN_KEY_LENGTH = 16
_HASHED_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NFT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def hash_key(key: str) -> str:
    """The form an API key is kept and compared in."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_duration(value: object) -> int:
    """Seconds from 90, "90", "90s", "15m", "24h" or "7d"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 3600, 90m, 24h or 7d")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use seconds or a number with s, m, h or d: 24h)")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _split(value: object) -> object:
    """Lists come as TOML arrays or, in the environment, as comma-separated strings."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Duration = Annotated[int, NoDecode]
StrList = Annotated[tuple[str, ...], NoDecode]
Threshold = Annotated[float | None, Field(ge=0.0, le=1.0, allow_inf_nan=False)]

_file_values: ContextVar[dict[str, Any] | None] = ContextVar("flowguard_config_file", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """The values of the TOML file `load_settings` read (below the environment, above defaults)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_file_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get() or {})


class Settings(BaseSettings):
    """The verdict service's settings; build with `load_settings` (or `Settings()` for the defaults
    plus the environment). Frozen: change a setting by loading again."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True, env_ignore_empty=True
    )

    data_dir: Path = Field(
        Path("flowguard-data"),
        description="Directory for the database (relative to the working directory).",
        json_schema_extra={"shown_default": "./flowguard-data"},
    )
    db_path: Path | None = Field(
        None,
        description="SQLite database file.",
        json_schema_extra={"shown_default": "<data_dir>/flowguard.db"},
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address `flowguard serve` listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port `flowguard serve` listens on.")
    api_keys: StrList = Field(
        (),
        description="API keys (comma-separated in the environment), each at least 16 characters or "
        "given as `sha256:<hex>` of the key. Kept and compared as sha256 digests, never logged.",
    )
    read_requires_key: bool = Field(False, description="Require an API key for reads too (not only writes).")
    insecure_no_auth: bool = Field(
        False,
        description="Accept writes without a key when no api_keys are set. For throwaway labs only.",
    )
    model: Path | None = Field(
        None,
        description="Model directory whose metadata and thresholds the service uses.",
        json_schema_extra={"shown_default": "the bundled model (or FLOWGUARD_MODEL)"},
    )
    predictor: Literal["auto", "compiled", "lightgbm"] = Field(
        "auto",
        description="What predicts live verdicts (`serve --interface`): `compiled`, the model's trees "
        "compiled to machine code by lleaves (same scores, about 4x faster); `lightgbm`; `auto`, "
        "compiled where it can be.",
    )
    threshold_stratum_mining: Threshold = Field(
        None,
        description="Score from which a stratum_mining verdict is blocked (0-1).",
        json_schema_extra={"shown_default": "the model's"},
    )
    threshold_reverse_tunnel: Threshold = Field(
        None,
        description="Score from which a reverse_tunnel verdict is blocked (0-1).",
        json_schema_extra={"shown_default": "the model's"},
    )
    ttl_stratum_mining: Duration = Field(
        86400, description="How long a stratum_mining block lasts (seconds, or 90m, 24h, 7d).",
        json_schema_extra={"shown_default": "24h"},
    )
    ttl_reverse_tunnel: Duration = Field(
        86400, description="How long a reverse_tunnel block lasts.",
        json_schema_extra={"shown_default": "24h"},
    )
    allowlist: StrList = Field(
        (),
        description="CIDRs never blocked, added to the built-in "
        "127.0.0.0/8, ::1/128, 169.254.0.0/16, fe80::/10 (and to those added with the API). "
        "Put your inside networks here.",
    )
    protect_local: bool = Field(
        True,
        description="Never block this host's own addresses, its default gateways or its DNS servers "
        "(read at start from `ip address`, `ip route` and /etc/resolv.conf).",
    )
    max_new_blocks_per_minute: int = Field(
        60, ge=0, le=1_000_000,
        description="New blocks allowed in any 60 s; beyond it verdicts are stored but not enforced.",
    )
    dry_run: bool = Field(False, description="Record decisions (marked dry-run) but never enforce them.")
    firewall: Literal["none", "nftables", "webhook"] = Field(
        "none", description="Firewall adapter that enforces decisions: none, nftables or webhook."
    )
    nft_table: str = Field("flowguard", description="nftables table the nftables adapter manages.")
    nft_netns: str | None = Field(
        None, description="Network namespace to run nft in (none: the current one)."
    )
    webhook_url: str | None = Field(None, description="URL the webhook adapter posts decisions to.")
    webhook_secret: SecretStr | None = Field(None, description="Secret the webhook adapter signs with.")
    cors_origins: StrList = Field((), description="Origins allowed by CORS (empty: CORS off).")
    max_body_bytes: int = Field(
        1 << 20, ge=1024, le=1 << 30, description="Largest request body accepted, in bytes.",
        json_schema_extra={"shown_default": "1048576 (1 MiB)"},
    )
    write_requests_per_minute: int = Field(
        600, ge=0, le=1_000_000,
        description="Write requests each API key may make per minute (a token bucket that also allows "
        "bursts of this size); more get 429. 0: no limit.",
    )
    expire_interval: Duration = Field(
        30, description="How often expired decisions are removed from the firewall.",
        json_schema_extra={"shown_default": "30s"},
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level: debug, info, warning or error."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))

    @field_validator("api_keys", "allowlist", "cors_origins", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("ttl_stratum_mining", "ttl_reverse_tunnel", "expire_interval", mode="before")
    @classmethod
    def _durations(cls, value: object) -> int:
        return parse_duration(value)

    @field_validator("api_keys")
    @classmethod
    def _hash_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        hashed = []
        for key in keys:
            if key.startswith("sha256:"):
                if not _HASHED_KEY.match(key):
                    raise ValueError("a hashed key is sha256: followed by 64 lowercase hex digits")
                hashed.append(key)
            elif len(key) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"each key must be at least {MIN_KEY_LENGTH} characters (make one with: "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            else:
                hashed.append(hash_key(key))
        return tuple(dict.fromkeys(hashed))

    @field_validator("allowlist")
    @classmethod
    def _cidrs(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for cidr in cidrs:
            try:
                out.append(str(ipaddress.ip_network(cidr, strict=False)))
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR (such as 10.0.0.0/8)") from None
        return tuple(out)

    @field_validator("nft_table")
    @classmethod
    def _nft_table(cls, value: str) -> str:
        if not _NFT_NAME.match(value):
            raise ValueError("must be a letter then letters, digits or _ (at most 64)")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin != "*" and not re.match(r"^https?://[^\s/]+$", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or *)")
        return origins

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.firewall == "webhook" and not self.webhook_url:
            raise ValueError("webhook_url: required when firewall is webhook")
        if self.firewall == "webhook" and not self.webhook_secret:
            raise ValueError("webhook_secret: required when firewall is webhook (the adapter signs with it)")
        if self.insecure_no_auth and self.api_keys:
            raise ValueError("insecure_no_auth: cannot be true when api_keys are set (drop one of them)")
        return self

    @property
    def database(self) -> Path:
        """The database file: db_path, else data_dir/flowguard.db."""
        return self.db_path if self.db_path is not None else self.data_dir / "flowguard.db"

    def threshold_for(self, verdict: str, model_thresholds: Mapping[str, float]) -> float:
        """The score from which `verdict` is blocked: the setting, else the model's threshold
        (`model_thresholds`: the service passes ModelMetadata.lowest_thresholds)."""
        value: float | None = getattr(self, f"threshold_{verdict}", None)
        if value is None:
            value = model_thresholds.get(verdict, 0.5)
        return float(value)

    def ttl_for(self, verdict: str) -> int:
        ttl: int = getattr(self, f"ttl_{verdict}")
        return ttl


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    env: str
    default: str
    help: str


def _shown_default(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    default = info.default
    if default is None:
        return "(none)"
    if isinstance(default, tuple):
        return ", ".join(default) if default else "(empty)"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(name, ENV_PREFIX + name.upper(), _shown_default(info), info.description or "")
    for name, info in Settings.model_fields.items()
)
"""Every setting with its environment variable, default and help; docs/service.md mirrors it."""


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    section = data.get("flowguard", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [flowguard] must be a table")
    unknown = sorted(set(section) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {unknown[0]!r} "
            f"(known: {', '.join(Settings.model_fields)})"
        )
    return dict(section)


@contextmanager
def _file_layer(values: dict[str, Any]) -> Iterator[None]:
    token = _file_values.set(values)
    try:
        yield
    finally:
        _file_values.reset(token)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < `config_file` (or $FLOWGUARD_CONFIG) < FLOWGUARD_* variables < `overrides`.

    Raises ConfigError naming the setting, what it allows and where the value came from.
    """
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = os.environ[CONFIG_ENV]
    path = Path(config_file) if config_file is not None else None
    file_values = _read_file(path) if path is not None else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        with _file_layer(file_values):
            return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, file_values, given)) from None


def _describe(
    exc: ValidationError, path: Path | None, file_values: Mapping[str, Any], flags: Mapping[str, Any]
) -> str:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = loc[0] if loc else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if not name and ":" in message:  # a model-level check names its setting itself
            name, _, message = message.partition(": ")
        if name in flags:
            where = "command line"
        elif os.environ.get(ENV_PREFIX + name.upper()):
            where = ENV_PREFIX + name.upper()
        elif name in file_values:
            where = str(path)
        else:
            where = "defaults"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r} (from {where})")
        else:
            problems.append(f"{name}: {message} (got {_short(error.get('input'))}, from {where})")
    return "; ".join(problems)


def _short(value: object) -> str:
    if isinstance(value, SecretStr):
        return "<secret>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective settings, safe to print: keys shown by digest prefix, secrets hidden."""
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name == "api_keys":
            value = [f"<redacted {key[:15]}>" for key in value]
        elif isinstance(value, SecretStr):
            value = "<redacted>"
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    out["db_path"] = str(settings.database)
    return out
