#!/usr/bin/env python3
"""SMTP test peer for mailtrail: a real aiosmtpd 1.4.6 server on 127.0.0.1 whose reply
is chosen by the recipient's local part, so one server plays every SPEC §4 row.

usage: smtp_peer.py --port N --maildir DIR [--mode MODE]

Per recipient, by local part (case-insensitive prefix), in --mode accept:
  bounce*      RCPT -> 550 5.1.1 user unknown          (hard bounce, about the recipient)
  full*        RCPT -> 552 5.2.2 mailbox full          (hard bounce, 5.2.x)
  noenh*       RCPT -> 550 no such user here           (5xx without enhanced status)
  defer*       RCPT -> 451 4.3.0 try later             (temporary)
  policy*      RCPT -> 550 5.7.1 message refused by policy   (sender-side, not suppressed)
  datareject*  RCPT ok, DATA -> 554 5.6.0 content rejected   (sender-side, at DATA)
  databounce*  RCPT ok, DATA -> 550 5.1.1 mailbox gone       (recipient, at DATA)
  drop*        RCPT -> the connection is reset (TCP RST), no reply at all
  slow*        RCPT -> 250 after 3 seconds
  anything else       250 2.1.5 OK

Whole-server modes (--mode):
  accept            the policy above (default); EHLO offers PIPELINING (RFC 2920),
                    as Postfix and Exim do, and aiosmtpd answers pipelined commands
                    in order
  accept-no-pipelining  the same policy, without PIPELINING in the EHLO reply
  reject-greeting   greeting "554 5.3.2 no service"; then 503 to everything but QUIT
  reject-mail       MAIL FROM -> 550 5.7.1 relay access denied
  defer-mail        MAIL FROM -> 421 4.7.0 try again later, then the server closes
  idle-close        the accept policy; a connection idle for 1 s is closed without a word
  idle-close-421    the same, with "421 4.4.2 idle too long" before closing
  broken-tls        (smtp_peer_tls.py only) STARTTLS offered but every handshake fails;
                    plain MAIL accepted (the case an MTA retries without TLS)

Every accepted message is stored as DIR/<time_ns>-<rand>.json (envelope) and then,
atomically, DIR/<same>.eml (the raw message as received). A test that sees the .eml
can always read the .json. Prints "smtp peer listening on 127.0.0.1:N" once the port
answers. SIGTERM / SIGINT stop it cleanly.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import uuid

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

MODES = (
    "accept",
    "accept-no-pipelining",
    "reject-greeting",
    "reject-mail",
    "defer-mail",
    "idle-close",
    "idle-close-421",
    "broken-tls",
)
IDLE_SECONDS = 1
DATA_SIZE_LIMIT = 10 * 1024 * 1024

# Local-part prefix -> RCPT reply. Checked in this order; the first match wins.
RCPT_REPLIES = (
    ("bounce", "550 5.1.1 user unknown"),
    ("full", "552 5.2.2 mailbox full"),
    ("noenh", "550 no such user here"),
    ("defer", "451 4.3.0 try later"),
    ("policy", "550 5.7.1 message refused by policy"),
)
# Local-part prefix -> DATA reply (RCPT is accepted for these).
DATA_REPLIES = (
    ("datareject", "554 5.6.0 content rejected"),
    ("databounce", "550 5.1.1 mailbox gone"),
)


def local_part(address):
    return address.rsplit("@", 1)[0].lower()


def reset_connection(server):
    """Drop the client abruptly: SO_LINGER 0 makes close() send a TCP RST, so the
    client sees "connection reset" rather than a polite EOF."""
    transport = server.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class PolicyHandler:
    """aiosmtpd handler: the per-recipient policy and the maildir writer."""

    def __init__(self, maildir, mode="accept"):
        self.maildir = maildir
        self.mode = mode

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.mode == "accept-no-pipelining":
            return responses
        # The last line ("250 HELP") ends the reply; PIPELINING goes before it.
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mode == "reject-mail":
            return "550 5.7.1 relay access denied"
        if self.mode == "defer-mail":
            # 421 means "closing the channel" (RFC 5321 §3.8). push() writes the reply
            # before the task yields, so closing on the next loop turn sends it first.
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = local_part(address)
        for prefix, reply in RCPT_REPLIES:
            if local.startswith(prefix):
                return reply
        if local.startswith("drop"):
            reset_connection(server)
            # Nothing reaches the client any more; aiosmtpd's write is a no-op now.
            return "421 4.4.2 connection dropped"
        if local.startswith("slow"):
            await asyncio.sleep(3)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        locals_ = [local_part(r) for r in envelope.rcpt_tos]
        for prefix, reply in DATA_REPLIES:
            if any(local.startswith(prefix) for local in locals_):
                return reply
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        tls = session.ssl is not None or (
            server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None
        )
        auth_user = None
        if session.authenticated and session.auth_data is not None:
            login = getattr(session.auth_data, "login", None)
            if isinstance(login, bytes):
                auth_user = login.decode("utf-8", "replace")
        envelope_json = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "helo": session.host_name,
            "peer": session.peer[0] if session.peer else None,
            "mail_options": envelope.mail_options,
            "tls": tls,
            "auth_user": auth_user,
        }
        base = os.path.join(self.maildir, name)
        with open(base + ".json", "w", encoding="utf-8") as f:
            json.dump(envelope_json, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 queued as " + name


class GreetingRejectSMTP(SMTP):
    """An SMTP session that refuses service in its greeting (RFC 5321 §3.1: after a
    554 greeting the server answers 503 to every command but QUIT)."""

    async def _handle_client(self):
        await self.push("554 5.3.2 no service")
        while self.transport is not None:
            try:
                line = await self._reader.readline()
            except (ConnectionError, asyncio.IncompleteReadError):
                break
            if not line:
                break
            if line.strip().upper().startswith(b"QUIT"):
                await self.push("221 2.0.0 bye")
                self.transport.close()
                break
            await self.push("503 5.5.1 no service here, only QUIT")


class Idle421SMTP(SMTP):
    """Says 421 before closing an idle connection (RFC 5321 §3.8)."""

    def _timeout_cb(self):
        if self.transport is not None:
            self.transport.write(b"421 4.4.2 idle too long, closing\r\n")
        super()._timeout_cb()


class PeerController(Controller):
    """A Controller that builds GreetingRejectSMTP sessions in reject-greeting mode."""

    def __init__(self, handler, mode, **kwargs):
        super().__init__(handler, **kwargs)
        self.mode = mode

    def factory(self):
        if self.mode == "reject-greeting":
            return GreetingRejectSMTP(self.handler, **self.SMTP_kwargs)
        if self.mode == "idle-close-421":
            return Idle421SMTP(self.handler, **self.SMTP_kwargs)
        return super().factory()


def make_controller(handler, port, mode, **kwargs):
    if mode in ("idle-close", "idle-close-421"):
        kwargs["timeout"] = IDLE_SECONDS
    return PeerController(
        handler,
        mode,
        hostname="127.0.0.1",
        port=port,
        enable_SMTPUTF8=True,
        data_size_limit=DATA_SIZE_LIMIT,
        **kwargs,
    )


def serve_until_signalled(controllers, banner, watch_stdin=False):
    """Start every controller, print the banner, block until SIGTERM or SIGINT (or,
    with watch_stdin, until stdin closes: the test process that owns the pipe died)."""
    for controller in controllers:
        controller.start()  # returns once its own test connection got an answer
    print(banner, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if watch_stdin:
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()), daemon=True).start()
    while not stop.wait(1.0):
        pass
    for controller in controllers:
        controller.stop()


def parse_args(argv, extra=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--mode", choices=MODES, default="accept")
    parser.add_argument(
        "--watch-stdin", action="store_true", help="exit when stdin reaches EOF (parent died)"
    )
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    os.makedirs(args.maildir, exist_ok=True)
    return args


def main(argv):
    args = parse_args(argv)
    controller = make_controller(PolicyHandler(args.maildir, args.mode), args.port, args.mode)
    print(f"smtp peer: mode {args.mode}, maildir {args.maildir}", file=sys.stderr, flush=True)
    serve_until_signalled(
        [controller], f"smtp peer listening on 127.0.0.1:{args.port}", args.watch_stdin
    )


if __name__ == "__main__":
    main(sys.argv[1:])
