"""Build capture files in tests: read the samples' Ethernet frames, rewrite their link headers, write
pcap or pcapng with struct. Nothing here trusts or validates what it writes: that is the point."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
LINKTYPE_ETHERNET, LINKTYPE_NULL, LINKTYPE_PPP, LINKTYPE_RAW, LINKTYPE_SLL = 1, 0, 9, 101, 113


@dataclass(frozen=True)
class Packet:
    ts_sec: int
    ts_usec: int
    data: bytes
    orig_len: int


def read_pcap(path: Path) -> tuple[int, list[Packet]]:
    """(link type, packets) of a little- or big-endian microsecond pcap."""
    raw = path.read_bytes()
    order = "<" if raw[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    linktype = struct.unpack_from(order + "I", raw, 20)[0]
    out, offset = [], 24
    while offset + 16 <= len(raw):
        sec, usec, incl, orig = struct.unpack_from(order + "IIII", raw, offset)
        out.append(Packet(sec, usec, raw[offset + 16 : offset + 16 + incl], orig))
        offset += 16 + incl
    return linktype, out


def pcap_bytes(packets: Iterable[Packet], linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144,
               order: str = "<") -> bytes:
    parts = [struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for p in packets:
        parts.append(struct.pack(order + "IIII", p.ts_sec, p.ts_usec, len(p.data), p.orig_len) + p.data)
    return b"".join(parts)


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def pcapng_bytes(
    packets: Iterable[Packet], linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144
) -> bytes:
    """Section header, one interface, an enhanced packet block per packet (microsecond times)."""
    parts = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
             _block(1, struct.pack("<HHI", linktype, 0, snaplen))]
    for p in packets:
        ts = p.ts_sec * 1_000_000 + p.ts_usec
        parts.append(_block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(p.data), p.orig_len)
                            + p.data))
    return b"".join(parts)


def ethertype(frame: bytes) -> int:
    return int(struct.unpack_from(">H", frame, 12)[0])


def relink(packets: Iterable[Packet], make: Callable[[bytes], bytes | None]) -> list[Packet]:
    """Each Ethernet frame rewritten by `make` (None drops it); orig_len follows the new length."""
    out = []
    for p in packets:
        data = make(p.data)
        if data is not None:
            out.append(replace(p, data=data, orig_len=len(data)))
    return out


def to_sll(frame: bytes) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, frame[6:12] + b"\0\0", ethertype(frame)) + frame[14:]


def to_raw(frame: bytes) -> bytes | None:
    return frame[14:] if ethertype(frame) in (ETH_IPV4, ETH_IPV6) else None


def to_null(frame: bytes) -> bytes | None:
    family = {ETH_IPV4: 2, ETH_IPV6: 10}.get(ethertype(frame))
    return None if family is None else struct.pack("<I", family) + frame[14:]


def to_ppp(frame: bytes) -> bytes | None:
    proto = {ETH_IPV4: 0x0021, ETH_IPV6: 0x0057}.get(ethertype(frame))
    return None if proto is None else struct.pack(">BBH", 0xFF, 0x03, proto) + frame[14:]


def to_vlan(frame: bytes) -> bytes:
    return frame[:12] + struct.pack(">HH", ETH_VLAN, 42) + frame[12:]


def to_qinq(frame: bytes) -> bytes:
    return frame[:12] + struct.pack(">HHHH", ETH_QINQ, 100, ETH_VLAN, 42) + frame[12:]


def to_ipv6(frame: bytes) -> bytes | None:
    """An IPv4 frame as IPv6 (2001:db8::a.b.c.d addresses; transport checksums left as they were)."""
    if ethertype(frame) != ETH_IPV4:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from(">H", ip, 2)[0]
    payload = ip[ihl:total]
    prefix = bytes.fromhex("20010db8") + b"\0" * 8
    header = struct.pack(">IHBB", 6 << 28, len(payload), ip[9], ip[8])
    header += prefix + ip[12:16] + prefix + ip[16:20]
    return frame[:12] + struct.pack(">H", ETH_IPV6) + header + payload


def fragment(frame: bytes, size: int = 64) -> list[bytes]:
    """An IPv4 frame cut into fragments of `size` payload bytes (a multiple of 8); others as they are."""
    if ethertype(frame) != ETH_IPV4:
        return [frame]
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from(">H", ip, 2)[0]
    payload = ip[ihl:total]
    if len(payload) <= size:
        return [frame]
    out = []
    for start in range(0, len(payload), size):
        chunk = payload[start : start + size]
        more = 0x2000 if start + size < len(payload) else 0
        head = bytearray(ip[:ihl])
        struct.pack_into(">HH", head, 2, ihl + len(chunk), more | (start // 8))
        struct.pack_into(">H", head, 10, 0)
        out.append(frame[:14] + bytes(head) + chunk)
    return out
