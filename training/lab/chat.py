"""XMPP chat for the lab: a prosody server and slixmpp clients that chat as people do.

    python -m training.lab.chat client --jid alice@chat.example.net --password pw \
        --server 10.1.3.9:5222 --peer bob@chat.example.net --bind 10.1.1.20 --duration 300 --seed 1

A chat connection is stratum's look-alike among messengers (the nDPI corpus's XMPP flows scored
close to mining): one long-lived TCP connection (STARTTLS or not), a login exchange, then small
messages both ways minutes or seconds apart, presence updates, and keepalives (XEP-0199 pings and
whitespace). The inside client talks to the outside server; its peer sits beside the server, so
only the inside connection crosses the router. `prosody_config` writes the server's configuration
and `register` its accounts (prosodyctl).

With `--queries S` the client also asks the server something every S seconds or so, as desktop
clients do (Pidgin in the corpus's jabber.pcap, 28-120 s apart): a ping to the server or to its own
connection (which the server hands back, and the client answers), the server's features, version
or time, the peer's vCard, nickname or last activity, its own roster or bookmarks, a group chat
room's features (`QUERIES`). Each is a request answered at once, the answer usually the larger
(the server adds addresses, or sends a list or an error): the exchange a share submission
resembles, with the client speaking first. It joins a group chat room (prosody's MUC component) as
its first query and now and then again, as a client's status change does: a presence answered
by the room's presences and its subject.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import random
import ssl
import string
import subprocess
import sys
import time
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

QUERIES = (
    # (whom, payload): "server" the domain, "peer" the peer's bare JID, "own" this connection's full
    # JID (the server hands it back), "account" no `to` (the account's own storage), "room" the
    # group chat room (`room_jid`)
    ("server", "<ping xmlns='urn:xmpp:ping'/>"),
    ("own", "<ping xmlns='urn:xmpp:ping'/>"),
    ("server", "<query xmlns='http://jabber.org/protocol/disco#info'/>"),
    ("server", "<query xmlns='http://jabber.org/protocol/disco#items'/>"),
    ("server", "<query xmlns='jabber:iq:version'/>"),
    ("server", "<time xmlns='urn:xmpp:time'/>"),
    ("peer", "<vCard xmlns='vcard-temp'/>"),
    ("peer", "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
             "<items node='http://jabber.org/protocol/nick' max_items='1'/></pubsub>"),
    ("peer", "<query xmlns='jabber:iq:last'/>"),
    ("account", "<query xmlns='jabber:iq:roster'/>"),
    ("account", "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>"),
    ("room", "<query xmlns='http://jabber.org/protocol/disco#info'/>"),
    ("room", "<query xmlns='http://jabber.org/protocol/disco#items'/>"),
)
"""What `--queries` asks, one drawn at a time (module docstring)."""
QUERY_MODULES = ("version", "time", "uptime", "lastactivity", "pep")
"""prosody modules that answer QUERIES (prosody_config's `queries`), and a MUC component."""
REJOIN = 0.1
"""Chance that a query is a presence to the room instead (`--queries`)."""


def muc_host(domain: str) -> str:
    """The host of prosody_config's MUC component for `domain`."""
    return f"conference.{domain}"


def room_jid(domain: str) -> str:
    """The group chat room `--queries` joins."""
    return f"lobby@{muc_host(domain)}"


def prosody_config(workdir: Path, listen: str, port: int, domain: str,
                   tls: tuple[Path, Path] | None, tls12: bool = False, queries: bool = False) -> str:
    """prosody's configuration: client connections on `listen`:`port` for `domain`, STARTTLS
    required with the certificate and key `tls` (TLS 1.2 only with `tls12`), or none offered;
    with `queries`, the modules that answer a client's QUERIES too. No server-to-server links.
    Makes the data and certificate directories it names in `workdir`."""
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    modules = ["roster", "saslauth", "tls", "disco", "ping", "presence", "private", "vcard", "carbons",
               *(QUERY_MODULES if queries else ())]
    lines = [
        "run_as_root = true", "daemonize = false", f'pidfile = "{workdir}/prosody.pid"',
        f'data_path = "{workdir}/data"', f'certificates = "{certs}"',
        f'log = {{ info = "{workdir}/prosody.log"; error = "{workdir}/prosody.err" }}',
        "modules_enabled = { " + "; ".join(f'"{m}"' for m in modules) + " }",
        'modules_disabled = { "s2s" }', f"c2s_ports = {{ {port} }}", f'c2s_interfaces = {{ "{listen}" }}',
        "s2s_ports = { }", 'authentication = "internal_hashed"',
        f"c2s_require_encryption = {'true' if tls else 'false'}",
        f"allow_unencrypted_plain_auth = {'false' if tls else 'true'}",
        f'VirtualHost "{domain}"',
    ]
    if tls:
        version = '; protocol = "tlsv1_2"' if tls12 else ""
        lines.append(f'  ssl = {{ certificate = "{tls[0]}"; key = "{tls[1]}"{version} }}')
    else:
        lines.append("  modules_disabled = { \"tls\" }")
    if queries:
        lines.append(f'Component "{muc_host(domain)}" "muc"')
    return "\n".join(lines) + "\n"


def register(config: Path, jid: str, password: str) -> None:
    """Create the account `jid` on the prosody whose configuration is `config`."""
    user, domain = jid.split("@")
    subprocess.run(["prosodyctl", "--config", str(config), "register", user, domain, password],
                   check=True, capture_output=True)


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 9)))
                    for _ in range(n))


class Chatter(slixmpp.ClientXMPP):
    """A person at a chat client: presence, then messages to `peer` now and then (a burst of a
    few lines, or one), a status change now and then, answers to what the peer says when `replies`.
    With `queries_s`, a query (QUERIES) every `queries_s` seconds or so.
    `run_client` adds keepalive pings."""

    def __init__(self, jid: str, password: str, peer: str, rng: random.Random, end: float,
                 mean_gap_s: float, replies: bool, queries_s: float | None = None) -> None:
        # without STARTTLS (a server that offers none), SCRAM or PLAIN in the clear, as old clients
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {
            "unencrypted_scram": True, "unencrypted_plain": True}})
        self.peer, self.rng, self.end, self.mean_gap_s, self.replies = peer, rng, end, mean_gap_s, replies
        self.queries_s = queries_s
        self.sent = self.received_count = self.asked = self.answered = self.joined = self.room = 0
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.received)
        self.add_event_handler("presence", self.presence_in)

    async def start(self, event: object) -> None:
        self.send_presence()
        await self.get_roster()
        asyncio.ensure_future(self.talk())
        if self.queries_s:
            asyncio.ensure_future(self.ask())

    async def talk(self) -> None:
        while time.monotonic() < self.end:
            gap = self.rng.expovariate(1 / self.mean_gap_s)
            await asyncio.sleep(min(gap, max(self.end - time.monotonic(), 0)))
            if time.monotonic() >= self.end:
                break
            if self.rng.random() < 0.15:
                self.send_presence(pshow=self.rng.choice(("away", "chat", "dnd", "xa")),
                                   pstatus=_words(self.rng, self.rng.randint(0, 6)))
                continue
            for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
                self.send_message(mto=slixmpp.JID(self.peer), mbody=_words(self.rng, self.rng.randint(1, 40)),
                                  mtype="chat")
                self.sent += 1
                await asyncio.sleep(self.rng.uniform(0.5, 6))
        self.disconnect()

    async def ask(self) -> None:
        """A query (QUERIES) every `queries_s` seconds, give or take half, until the end; an error
        answer (no vCard, no nickname published) counts as answered: it is one too."""
        assert self.queries_s
        while True:
            await asyncio.sleep(self.queries_s * self.rng.uniform(0.5, 1.5))
            if time.monotonic() >= self.end:
                return
            room = room_jid(self.boundjid.domain)
            if not self.joined or self.rng.random() < REJOIN:
                join = self.make_presence(pto=f"{room}/{self.boundjid.user}")
                join.append(ET.fromstring("<x xmlns='http://jabber.org/protocol/muc'/>"))
                join.send()
                self.joined += 1
                continue
            whom, payload = self.rng.choice(QUERIES)
            iq = self.Iq()
            iq["type"] = "get"
            to = {"server": self.boundjid.domain, "peer": slixmpp.JID(self.peer).bare,
                  "own": self.boundjid.full, "room": room}.get(whom)
            if to:
                iq["to"] = to
            iq.append(ET.fromstring(payload))
            self.asked += 1
            try:
                await iq.send(timeout=15)
            except IqTimeout:
                continue
            except IqError:
                pass  # an error is an answer too
            self.answered += 1

    def presence_in(self, pres: slixmpp.Presence) -> None:
        if self.joined and pres["from"].bare == room_jid(self.boundjid.domain):
            self.room += 1

    def received(self, msg: slixmpp.Message) -> None:
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.received_count += 1
        if self.replies and msg["type"] in ("chat", "normal") and self.rng.random() < 0.6:
            delay = self.rng.uniform(1, 20)
            self.loop.call_later(delay, functools.partial(
                self.send_message, mto=msg["from"].bare,
                mbody=_words(self.rng, self.rng.randint(1, 30)), mtype="chat"))


def run_client(a: argparse.Namespace) -> int:
    host, port = a.server.rsplit(":", 1)
    rng = random.Random(a.seed)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if a.bind:  # the session's own inside address (slixmpp has no option for it)
        loop.create_connection = functools.partial(loop.create_connection,  # type: ignore[method-assign]
                                                   local_addr=(a.bind, 0))
    xmpp = Chatter(a.jid, a.password, a.peer, rng, time.monotonic() + a.duration, a.mean_gap, a.replies,
                   a.queries)
    xmpp.enable_direct_tls = False  # STARTTLS on the one connection (no XEP-0368 attempt first)
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0199", {"keepalive": True, "interval": a.ping, "timeout": 30})
    xmpp.whitespace_keepalive_interval = a.ping
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    xmpp.ssl_context = ctx
    xmpp.connect(host, int(port))
    loop.run_until_complete(xmpp.disconnected)
    print(f"chat STATS sent={xmpp.sent} received={xmpp.received_count} asked={xmpp.asked} "
          f"answered={xmpp.answered} joined={xmpp.joined} room={xmpp.room}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.lab.chat", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client", help="log in and chat with a peer for a while")
    c.add_argument("--jid", required=True)
    c.add_argument("--password", required=True)
    c.add_argument("--server", required=True, help="HOST:PORT of the XMPP server")
    c.add_argument("--peer", required=True, help="the JID to chat with")
    c.add_argument("--bind", default=None, help="local address to connect from")
    c.add_argument("--duration", type=float, default=300.0)
    c.add_argument("--mean-gap", type=float, default=60.0, help="mean seconds between messages")
    c.add_argument("--ping", type=float, default=60.0, help="seconds between keepalive pings")
    c.add_argument("--replies", action="store_true", help="answer the peer's messages")
    c.add_argument("--queries", type=float, default=None,
                   help="mean seconds between queries to the server (pings, features, vCards)")
    c.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_client(a)


if __name__ == "__main__":
    sys.exit(main())
