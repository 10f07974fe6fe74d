"""The shape of a flow record as the rest of flowguard reads it (nfstream's NFlow fits it)."""

from __future__ import annotations

from typing import Protocol


class FlowRecord(Protocol):
    """The attributes of a flow that features and outputs read. Direction src2dst is the initiator's."""

    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: int
    bidirectional_first_seen_ms: int
    bidirectional_last_seen_ms: int
    bidirectional_duration_ms: int
    bidirectional_packets: int
    bidirectional_bytes: int
    application_name: str
