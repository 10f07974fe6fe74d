from __future__ import annotations

import struct
from pathlib import Path

import pytest

from flowguard.errors import CaptureError
from flowguard.pcapfile import inspect_capture, sniff_format


def pcap_bytes(packets: list[bytes], order: str = "<") -> bytes:
    out = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, data in enumerate(packets):
        out += struct.pack(order + "IIII", 1700000000 + i, 0, len(data), len(data)) + data
    return out


def pcapng_bytes(packets: list[bytes]) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        length = 12 + len(body)
        return struct.pack("<II", btype, length) + body + struct.pack("<I", length)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 65535))
    epbs = b"".join(block(6, struct.pack("<IIIII", 0, 0, 0, len(p), len(p)) + p) for p in packets)
    return shb + idb + epbs


FRAMES = [bytes(60), bytes(1514), bytes(42)]


@pytest.mark.parametrize("order", ["<", ">"])
def test_whole_pcap(tmp_path: Path, order: str) -> None:
    p = tmp_path / "a.pcap"
    p.write_bytes(pcap_bytes(FRAMES, order))
    info = inspect_capture(p)
    assert (info.format, info.packets, info.complete) == ("pcap", 3, True)
    assert sniff_format(p) == "pcap"


def test_whole_pcapng(tmp_path: Path) -> None:
    p = tmp_path / "a.pcapng"
    p.write_bytes(pcapng_bytes(FRAMES))
    info = inspect_capture(p)
    assert (info.format, info.packets, info.complete) == ("pcapng", 3, True)


@pytest.mark.parametrize("make", [pcap_bytes, pcapng_bytes])
@pytest.mark.parametrize("cut", [1, 10, 700])
def test_truncated_capture_says_where(tmp_path: Path, make, cut: int) -> None:
    data = make(FRAMES)
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:-cut])
    info = inspect_capture(p)
    assert not info.complete
    assert info.truncated_at is not None and info.truncated_at < len(data) - cut


def test_corrupt_record_length_is_truncation(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(FRAMES))
    struct.pack_into("<I", data, 24 + 8, 0x7FFFFFFF)  # first record claims 2 GiB
    p = tmp_path / "bad.pcap"
    p.write_bytes(bytes(data))
    assert inspect_capture(p).truncated_at == 24


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"hello, not a capture\n", "not a capture file"),
     (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap header")],
)
def test_not_a_capture(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(content)
    with pytest.raises(CaptureError, match=message):
        inspect_capture(p)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such file"):
        inspect_capture(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match="is a directory"):
        inspect_capture(tmp_path)


@pytest.mark.parametrize("make", [pcap_bytes, pcapng_bytes])
@pytest.mark.parametrize("block", [16, 37, 64, 1 << 22])
def test_walk_across_block_boundaries(tmp_path: Path, monkeypatch, make, block: int) -> None:
    """The walk reads the file in blocks and follows record headers inside each: a header that
    straddles two blocks, or a record larger than a block, must read the same as one whole block."""
    from flowguard import pcapfile

    frames = [bytes(n) for n in (0, 1, 3, 60, 1514, 42, 9000, 17, 64, 128)] * 7
    data = make(frames)
    p = tmp_path / "many.pcap"
    monkeypatch.setattr(pcapfile._Blocks, "BLOCK", block)
    p.write_bytes(data)
    info = inspect_capture(p)
    assert (info.packets, info.complete, info.linktype) == (len(frames), True, 1)
    for cut in (1, 5, 100, 9000):
        p.write_bytes(data[:-cut])
        cut_info = inspect_capture(p)
        monkeypatch.setattr(pcapfile._Blocks, "BLOCK", 1 << 22)
        whole_block = inspect_capture(p)
        monkeypatch.setattr(pcapfile._Blocks, "BLOCK", block)
        assert cut_info == whole_block and not cut_info.complete
