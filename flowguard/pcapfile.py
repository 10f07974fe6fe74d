"""What a capture file is and whether it is whole, read from its own framing (no nfstream here).

libpcap, and so nfstream, stops quietly at the first cut-off record of a truncated file; an incident
responder must be told that part of the evidence was not read. `inspect_capture` walks the record
headers (pcap) or block lengths (pcapng) without decoding packets.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from flowguard.errors import CaptureError

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",  # microsecond, little-endian
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond
    b"\xa1\xb2\x3c\x4d": ">",
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_PCAPNG_PACKET_BLOCKS = frozenset({2, 3, 6})  # obsolete packet, simple packet, enhanced packet
# Larger than any real frame (jumbo frames, 256 KiB snap lengths): a record claiming more is corrupt.
_MAX_RECORD = 1 << 24

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")


@dataclass(frozen=True)
class CaptureInfo:
    """The framing of one capture file."""

    path: Path
    format: str  # "pcap" or "pcapng"
    size: int
    packets: int
    truncated_at: int | None  # byte offset of the first record that is cut off or corrupt

    @property
    def complete(self) -> bool:
        return self.truncated_at is None


def sniff_format(path: Path) -> str | None:
    """'pcap' or 'pcapng' from the file's magic number, None when it is neither."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError:
        return None
    if magic in _PCAP_MAGICS:
        return "pcap"
    if magic == _PCAPNG_MAGIC:
        return "pcapng"
    return None


def inspect_capture(path: str | os.PathLike[str]) -> CaptureInfo:
    """Check that `path` is a readable capture and walk its framing.

    Raises CaptureError when the file is missing, empty, or not a pcap/pcapng capture. A capture that
    is cut off part-way is not an error here: `truncated_at` says where, and the caller decides.
    """
    p = Path(path)
    if not p.exists():
        raise CaptureError(f"{p}: no such file")
    if p.is_dir():
        raise CaptureError(f"{p}: is a directory")
    try:
        size = p.stat().st_size
        if size == 0:
            raise CaptureError(f"{p}: empty file, not a capture")
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            magic = bytes(buf[:4])
            if magic in _PCAP_MAGICS:
                return _walk_pcap(p, buf, size, _PCAP_MAGICS[magic])
            if magic == _PCAPNG_MAGIC:
                return _walk_pcapng(p, buf, size)
    except OSError as exc:
        raise CaptureError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    raise CaptureError(f"{p}: not a capture file (expected pcap or pcapng, magic {magic.hex()})")


def _walk_pcap(path: Path, buf: mmap.mmap, size: int, order: str) -> CaptureInfo:
    if size < 24:
        raise CaptureError(f"{path}: truncated pcap header ({size} of 24 bytes)")
    record = struct.Struct(order + "8xI4x")  # ts_sec, ts_usec, incl_len, orig_len
    unpack = record.unpack_from
    offset, packets = 24, 0
    while offset + 16 <= size:
        (incl_len,) = unpack(buf, offset)
        end = offset + 16 + incl_len
        if incl_len > _MAX_RECORD or end > size:
            return CaptureInfo(path, "pcap", size, packets, offset)
        offset = end
        packets += 1
    return CaptureInfo(path, "pcap", size, packets, None if offset == size else offset)


def _walk_pcapng(path: Path, buf: mmap.mmap, size: int) -> CaptureInfo:
    if size < 12:
        raise CaptureError(f"{path}: truncated pcapng header ({size} bytes)")
    order = _PCAPNG_BYTE_ORDER.get(bytes(buf[8:12]))
    if order is None:
        raise CaptureError(f"{path}: pcapng section header has an unknown byte-order magic")
    head = struct.Struct(order + "II")
    offset, packets = 0, 0
    while offset + 12 <= size:
        block_type, length = head.unpack_from(buf, offset)
        if block_type == 0x0A0D0D0A:  # a new section may switch byte order
            order = _PCAPNG_BYTE_ORDER.get(bytes(buf[offset + 8 : offset + 12]), "")
            if not order:
                return CaptureInfo(path, "pcapng", size, packets, offset)
            head = struct.Struct(order + "II")
            block_type, length = head.unpack_from(buf, offset)
        if length < 12 or length % 4 or length > _MAX_RECORD or offset + length > size:
            return CaptureInfo(path, "pcapng", size, packets, offset)
        if block_type in _PCAPNG_PACKET_BLOCKS:
            packets += 1
        offset += length
    return CaptureInfo(path, "pcapng", size, packets, None if offset == size else offset)
