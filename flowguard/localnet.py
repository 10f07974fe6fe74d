"""The appliance's own addresses, its default gateways and its DNS servers: never to be blocked.

    protected_addresses()   # ["10.0.0.2", "10.0.0.1", "fd00::1", "10.255.255.53", ...]

Read once at service start from `ip -j address`, `ip -j route show default` (IPv4 and IPv6) and
/etc/resolv.conf. A source that cannot be read contributes nothing (and is logged): the built-in and
configured allowlists still apply.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("flowguard.localnet")

RESOLV_CONF = Path("/etc/resolv.conf")


def _ip_json(*args: str) -> list[dict[str, object]]:
    ip = shutil.which("ip")
    if ip is None:
        log.warning("cannot discover local addresses: the ip command is not installed")
        return []
    try:
        out = subprocess.run([ip, "-j", *args], capture_output=True, text=True, timeout=10, check=True)
        data = json.loads(out.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("cannot discover local addresses with `ip %s`: %s", " ".join(args), exc)
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def interface_addresses() -> list[str]:
    out = []
    for link in _ip_json("address", "show"):
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            if isinstance(info, dict) and info.get("local"):
                out.append(str(info["local"]))
    return out


def default_gateways() -> list[str]:
    out = []
    for family in ("-4", "-6"):
        for route in _ip_json(family, "route", "show", "default"):
            if route.get("gateway"):
                out.append(str(route["gateway"]))
    return out


def dns_servers(resolv_conf: Path | None = None) -> list[str]:
    resolv_conf = resolv_conf or RESOLV_CONF
    try:
        text = resolv_conf.read_text(errors="replace")
    except OSError as exc:
        log.warning("cannot read DNS servers from %s: %s", resolv_conf, exc)
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1].split("%")[0])  # fe80::1%eth0: the zone is not part of the address
    return out


def _valid(addresses: Iterable[str]) -> list[str]:
    out: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if str(address) not in out:
            out.append(str(address))
    return out


def protected_addresses() -> list[str]:
    """Own addresses, default gateways and DNS servers, as canonical address text."""
    found = _valid([*interface_addresses(), *default_gateways(), *dns_servers()])
    log.info("never blocked (this host, its gateways, its DNS servers): %s", ", ".join(found) or "none found")
    return found
