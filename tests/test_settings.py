"""Settings: defaults < file < environment < flags, errors that name the setting, and the docs table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowguard.cli import app
from flowguard.config import SETTINGS, Settings, hash_key, load_settings
from flowguard.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "service.md"
KEY = "a-key-that-is-long-enough"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flowguard.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings()
    assert (s.host, s.port, s.firewall) == ("127.0.0.1", 8080, "none")
    assert s.dry_run is False and s.read_requires_key is False
    assert s.database == Path("flowguard-data/flowguard.db")
    assert s.ttl_stratum_mining == s.ttl_reverse_tunnel == 86400
    assert s.max_new_blocks_per_minute == 60 and s.max_body_bytes == 1 << 20
    assert s.api_keys == () and s.cors_origins == () and s.allowlist == ()
    assert s.threshold_for("stratum_mining", {"stratum_mining": 0.92}) == 0.92


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, 'port = 9000\nhost = "0.0.0.0"\ndry_run = true\nttl_reverse_tunnel = "2h"\n'
                             'allowlist = ["10.1.2.3/8", "2001:db8::/32"]\n')
    s = load_settings(config)
    assert (s.port, s.host, s.dry_run, s.ttl_reverse_tunnel) == (9000, "0.0.0.0", True, 7200)
    assert s.allowlist == ("10.0.0.0/8", "2001:db8::/32")
    monkeypatch.setenv("FLOWGUARD_PORT", "9100")
    monkeypatch.setenv("FLOWGUARD_ALLOWLIST", "192.168.0.0/16, 172.16.0.0/12")
    s = load_settings(config)
    assert s.port == 9100 and s.host == "0.0.0.0" and s.allowlist == ("192.168.0.0/16", "172.16.0.0/12")
    assert load_settings(config, {"port": 9200, "host": None}).port == 9200
    monkeypatch.setenv("FLOWGUARD_CONFIG", str(config))
    assert load_settings().dry_run is True                           # FLOWGUARD_CONFIG names the file


def test_a_flowguard_table_in_the_file(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "[flowguard]\nport = 8181\n")).port == 8181


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("FIREWALL", "iptables",
         r"^firewall: .*'none', 'nftables' or 'webhook' \(got 'iptables', from FLOWGUARD_FIREWALL\)"),
        ("PORT", "70000", r"^port: .*less than or equal to 65535"),
        ("THRESHOLD_STRATUM_MINING", "1.5", r"^threshold_stratum_mining: .*less than or equal to 1"),
        ("TTL_REVERSE_TUNNEL", "soon", r"^ttl_reverse_tunnel: .*not a duration .*24h"),
        ("API_KEYS", "short", r"^api_keys: .*at least 16 characters"),
        ("ALLOWLIST", "10.0.0.0/8,intranet", r"^allowlist: 'intranet' is not an IP address or CIDR"),
        ("DRY_RUN", "perhaps", r"^dry_run: .*valid boolean"),
        ("MAX_BODY_BYTES", "10", r"^max_body_bytes: .*greater than or equal to 1024"),
        ("CORS_ORIGINS", "soc.example", r"^cors_origins: 'soc.example' is not an origin"),
        ("LOG_LEVEL", "loud", r"^log_level: .*'debug', 'info', 'warning' or 'error'"),
    ],
)
def test_errors_name_the_setting_and_what_it_allows(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("FLOWGUARD_" + env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert re.search(expected, str(info.value)), str(info.value)
    assert f"from FLOWGUARD_{env}" in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'prot' .*known: data_dir, db_path"):
        load_settings(write(tmp_path, "prot = 1\n"))
    with pytest.raises(ConfigError, match=r"port: .* from .*flowguard.toml"):
        load_settings(write(tmp_path, 'port = "eighty"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "port = \n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="^webhook_url: required when firewall is webhook"):
        load_settings(write(tmp_path, 'firewall = "webhook"\n'))
    with pytest.raises(ConfigError, match="^insecure_no_auth: cannot be true when api_keys are set"):
        load_settings(write(tmp_path, f'insecure_no_auth = true\napi_keys = ["{KEY}"]\n'))


def test_keys_are_kept_as_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = "sha256:" + "ab" * 32
    monkeypatch.setenv("FLOWGUARD_API_KEYS", f"{KEY},{digest}")
    s = load_settings()
    assert s.api_keys == (hash_key(KEY), digest)
    assert KEY not in repr(s) and KEY not in str(s.model_dump())


def test_config_show_redacts_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWGUARD_API_KEYS", KEY)
    monkeypatch.setenv("FLOWGUARD_WEBHOOK_SECRET", "webhook-secret-value")
    result = CliRunner().invoke(app, ["config", "show", "--config", str(write(tmp_path, "port = 9001\n"))])
    assert result.exit_code == 0, result.output
    assert "port = 9001" in result.output
    assert KEY not in result.output and hash_key(KEY) not in result.output
    assert "webhook-secret-value" not in result.output and 'webhook_secret = "<redacted>"' in result.output
    assert f'api_keys = ["<redacted {hash_key(KEY)[:15]}>"]' in result.output
    bad = CliRunner().invoke(app, ["config", "show"], env={"FLOWGUARD_PORT": "x"})
    assert bad.exit_code == 2 and "port:" in bad.output


def test_every_setting_is_documented() -> None:
    """docs/service.md has a row for each setting (name, variable, default) and none for others."""
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| ([^|]*) \|", DOCS.read_text(), re.MULTILINE)
    documented = {name: (env, default.strip()) for name, env, default in rows}
    for setting in SETTINGS:
        assert setting.name in documented, f"{setting.name} is not in docs/service.md's settings table"
        assert documented[setting.name] == (setting.env, setting.default), setting.name
    assert set(documented) == {s.name for s in SETTINGS}
    assert [s.name for s in SETTINGS] == list(Settings.model_fields)
