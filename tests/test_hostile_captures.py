"""Hostile and odd captures: other link types, tags, fragments, cut packets, broken framing, and
random corruption. Whatever the input, triage ends with verdicts for what it could read or one line
naming the file and the problem; never a traceback, never a hang, never unbounded memory."""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard.model import CLASSES, FlowClassifier
from flowguard.triage import OUTPUT_FIELDS, FileDone, FlowVerdict, triage
from tests.capturekit import (
    LINKTYPE_NULL,
    LINKTYPE_PPP,
    LINKTYPE_RAW,
    LINKTYPE_SLL,
    Packet,
    fragment,
    pcap_bytes,
    pcapng_bytes,
    read_pcap,
    relink,
    to_ipv6,
    to_null,
    to_ppp,
    to_qinq,
    to_raw,
    to_sll,
    to_vlan,
)

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
MINING = PCAPS / "mining-btc-clear-3333.pcap"  # one stratum flow to port 3333, 266 packets
SMALL = sorted(PCAPS.glob("*.pcap"), key=lambda p: p.stat().st_size)[:3]
CLI_TIMEOUT = 120
MEMORY_LIMIT = 6 << 30  # address space for the triage process (nfstream and LightGBM map a lot)


def _frames() -> list[Packet]:
    linktype, packets = read_pcap(MINING)
    assert linktype == 1 and len(packets) == 266
    return packets


def _raw_ipv4(frame: bytes) -> bytes | None:
    return frame[14:] if frame[12:14] == b"\x08\x00" else None


def _cut(packets: list[Packet], keep: int) -> list[Packet]:
    return [Packet(p.ts_sec, p.ts_usec, p.data[:keep], p.orig_len) for p in packets]


READABLE = {  # (file bytes) -> each must still show the mining flow
    "sll": lambda f: pcap_bytes(relink(f, to_sll), LINKTYPE_SLL),
    "raw-101": lambda f: pcap_bytes(relink(f, to_raw), LINKTYPE_RAW),
    "raw-12": lambda f: pcap_bytes(relink(f, to_raw), 12),
    "raw-ipv4-228": lambda f: pcap_bytes(relink(f, _raw_ipv4), 228),
    "null-0": lambda f: pcap_bytes(relink(f, to_null), LINKTYPE_NULL),
    "ppp-hdlc-50": lambda f: pcap_bytes(relink(f, to_ppp), 50),
    "vlan": lambda f: pcap_bytes(relink(f, to_vlan)),
    "double-8100": lambda f: pcap_bytes(relink(relink(f, to_vlan), to_vlan)),
    "ipv6": lambda f: pcap_bytes(relink(f, to_ipv6)),
    "ipv6-raw": lambda f: pcap_bytes(relink(relink(f, to_ipv6), to_raw), LINKTYPE_RAW),
    "caplen-lt-len": lambda f: pcap_bytes(_cut(f, 54)),  # headers only, as a 54-byte snap length
    "big-endian": lambda f: pcap_bytes(f, order=">"),
    "snaplen-4G": lambda f: pcap_bytes(f, snaplen=0xFFFFFFFF),
    "snaplen-0": lambda f: pcap_bytes(f, snaplen=0),
    "pcapng": lambda f: pcapng_bytes(f),
    "pcapng-sll": lambda f: pcapng_bytes(relink(f, to_sll), LINKTYPE_SLL),
}


def run_triage(path: Path, classifier: FlowClassifier) -> tuple[list[FlowVerdict], FileDone]:
    verdicts: list[FlowVerdict] = []
    done = None
    for event in triage([path], classifier):
        if isinstance(event, FileDone):
            done = event
        else:
            verdicts.extend(event)
    assert done is not None
    return verdicts, done


@pytest.mark.parametrize("name", sorted(READABLE))
def test_other_link_types_tags_and_cut_packets_still_give_the_verdict(
    name: str, tmp_path: Path, classifier: FlowClassifier
) -> None:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(READABLE[name](_frames()))
    verdicts, done = run_triage(path, classifier)
    assert done.error is None, done.error
    mining = [v for v in verdicts if v.dst_port == 3333]
    assert mining and all(v.verdict == "stratum_mining" for v in mining), verdicts
    if name.startswith("ipv6"):
        assert mining[0].dst_ip.startswith("2001:db8::")


def test_an_undecodable_link_type_is_an_error_not_silence(tmp_path: Path, classifier: FlowClassifier) -> None:
    """nfstream skips PPP (9) packets without a word; flowguard says the file was not read."""
    path = tmp_path / "ppp.pcap"
    path.write_bytes(pcap_bytes(relink(_frames(), to_ppp), LINKTYPE_PPP))
    verdicts, done = run_triage(path, classifier)
    assert verdicts == []
    assert done.error is not None and "link type 9 (PPP)" in done.error and "266 packets" in done.error


def test_fragments_and_qinq_do_not_break_triage(tmp_path: Path, classifier: FlowClassifier) -> None:
    """Known limits of nfstream (SECURITY.md): IPv4 fragments are not reassembled and 802.1ad (0x88a8)
    outer tags are not decoded. Triage must still end cleanly with well-formed verdicts."""
    frames = _frames()
    fragmented = [Packet(p.ts_sec, p.ts_usec, f, len(f)) for p in frames for f in fragment(p.data)]
    assert len(fragmented) > len(frames)
    for name, data in (("frag", pcap_bytes(fragmented)), ("qinq", pcap_bytes(relink(frames, to_qinq)))):
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(data)
        verdicts, done = run_triage(path, classifier)
        assert done.error is None
        assert all(v.verdict in CLASSES for v in verdicts)
        if name == "frag":  # the first fragments still carry the ports: the flow is seen
            assert any(v.dst_port == 3333 for v in verdicts)


# -- broken framing, through the real command ---------------------------------------------------------

HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def _record(incl: int, orig: int, data: bytes) -> bytes:
    return struct.pack("<IIII", 1_700_000_000, 0, incl, orig) + data


def _broken(frames: list[Packet]) -> dict[str, tuple[bytes, str | None]]:
    """name -> (file bytes, the problem expected on stderr, or None when the file reads cleanly)."""
    whole = pcap_bytes(frames)
    ng = pcapng_bytes(frames)
    first = frames[0].data
    return {
        "zero-length": (b"", "empty file"),
        "header-only": (HEADER, None),
        "half-header": (HEADER[:10], "truncated"),
        "wrong-magic": (b"\xde\xad\xbe\xef" + whole[4:], "not a capture"),
        "text": (b"GET / HTTP/1.1\r\n\r\n" * 100, "not a capture"),
        "garbage-after-header": (HEADER + bytes(range(256)) * 64, "truncated or corrupt"),
        "truncated-mid-record": (whole[: len(whole) // 2 + 7], "truncated or corrupt"),
        "huge-record-length": (whole[:2000] + _record(0xFFFFFFF0, 0xFFFFFFF0, first), "truncated or corrupt"),
        "huge-orig-length": (HEADER + _record(len(first), 0xFFFFFFFF, first) * 50, None),
        "record-over-snaplen": (HEADER + _record(len(first), len(first), first) + whole[24:], None),
        "zero-length-records": (HEADER + _record(0, 0, b"") * 1000 + whole[24:], None),
        "pcapng-truncated": (ng[: len(ng) * 2 // 3], "truncated or corrupt"),
        "pcapng-bad-byte-order": (ng[:8] + b"\x00\x11\x22\x33" + ng[12:], "byte-order"),
        "pcapng-huge-block": (ng[:28] + struct.pack("<II", 6, 0xFFFFFFF0) + ng[36:], "block size"),
        "pcapng-no-interface": (ng[:28], "no Interface Description"),
    }


def flowguard_jsonl(*paths: Path) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "flowguard", "triage", "-f", "jsonl", *map(str, paths)],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT, preexec_fn=limit)


def check_jsonl(stdout: str) -> list[dict[str, object]]:
    out = []
    for line in stdout.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict) and list(obj) == list(OUTPUT_FIELDS), line
        assert obj["verdict"] in CLASSES
        out.append(obj)
    return out


def test_broken_framing_gets_one_line_per_file_never_a_traceback(tmp_path: Path) -> None:
    cases = _broken(_frames())
    paths = []
    for name, (data, _) in cases.items():
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(data)
        paths.append(path)
    proc = flowguard_jsonl(*paths)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    check_jsonl(proc.stdout)
    lines = proc.stderr.splitlines()
    for name, (_, problem) in cases.items():
        mine = [line for line in lines if line.startswith(f"flowguard: {tmp_path / name}.pcap: ")]
        if problem is None:
            assert mine == [], mine
        else:
            assert len(mine) == 1 and problem in mine[0], (name, lines)
    assert len(lines) == sum(1 for _, p in cases.values() if p is not None), lines
    flows = {Path(str(o["pcap"])).stem for o in check_jsonl(proc.stdout)}
    # what could be read of a cut-off or corrupt file is still classified
    assert {"truncated-mid-record", "huge-record-length", "record-over-snaplen",
            "zero-length-records", "huge-orig-length"} <= flows


# -- random corruption ------------------------------------------------------------------------------

Mutation = tuple[str, int, int]


def _mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for kind, where, value in mutations:
        at = where % max(len(buf), 1)
        if kind == "flip":
            if buf:
                buf[at] ^= 1 << (value % 8)
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = bytes((value * 7 + i) & 0xFF for i in range(value % 64 + 1))
        elif kind == "length":  # overwrite a 32-bit word where a length field may sit
            buf[at : at + 4] = struct.pack("<I", [0, 0xFFFFFFFF, 0x7FFFFFFF, 65536, value][value % 5])
    return bytes(buf)


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "truncate", "insert", "length"]),
              st.integers(0, 1 << 20), st.integers(0, 1 << 16)),
    min_size=1, max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(sample=st.sampled_from(SMALL), fmt=st.sampled_from(["pcap", "pcapng"]), changes=mutations)
def test_mutated_captures_never_crash_triage(
    sample: Path, fmt: str, changes: list[Mutation], classifier: FlowClassifier
) -> None:
    _, frames = read_pcap(sample)
    data = pcap_bytes(frames) if fmt == "pcap" else pcapng_bytes(frames)
    with tempfile.TemporaryDirectory(prefix="fghd-") as tmp:
        path = Path(tmp) / f"mutated.{fmt}"
        path.write_bytes(_mutate(data, changes))
        verdicts, done = run_triage(path, classifier)
    if done.error is not None:
        assert "\n" not in done.error and done.error
    for v in verdicts:
        assert v.verdict in CLASSES and 0.0 <= v.score <= 1.0
        assert list(v.to_dict()) == list(OUTPUT_FIELDS)
        json.dumps(v.to_dict(), allow_nan=False)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_captures_through_the_command(seed: int, tmp_path: Path) -> None:
    import random

    rng = random.Random(seed)
    data = pcap_bytes(_frames()) if seed % 2 else pcapng_bytes(_frames())
    changes = [(rng.choice(["flip", "truncate", "insert", "length"]), rng.randrange(len(data)),
                rng.randrange(1 << 16)) for _ in range(rng.randint(3, 30))]
    changes = [c for c in changes if c[0] != "truncate"] + [c for c in changes if c[0] == "truncate"][:1]
    path = tmp_path / "mutated.pcap"
    path.write_bytes(_mutate(data, changes))
    proc = flowguard_jsonl(path)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    check_jsonl(proc.stdout)
    for line in proc.stderr.splitlines():
        assert line.startswith(f"flowguard: {path}: "), line
