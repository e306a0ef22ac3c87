#!/usr/bin/env python3
"""TLS + AUTH variant of smtp_peer.py, with the same per-recipient policy and modes.

usage: smtp_peer_tls.py --port N --maildir DIR --cert PEM --key PEM [--mode MODE]
                        [--user USER --password PASS]

  127.0.0.1:N     STARTTLS required before MAIL (plain MAIL gets 530), AUTH only after TLS
  127.0.0.1:N+1   implicit TLS (smtps), AUTH offered at once
AUTH PLAIN/LOGIN accepts USER/PASS (default user/pass); anything else gets 535 5.7.8.
AUTH is offered but not required, so a test can check the client really logs in by
looking at "auth_user" in the stored .json.

Prints "smtp tls peer listening on 127.0.0.1:N (STARTTLS) and 127.0.0.1:N+1 (implicit
TLS)" once both ports answer. The certificate must be an end-entity cert (CA:FALSE,
see PEERS.md §1.4): rustls rejects a CA cert used as a server cert.
"""
import ssl
import sys
import warnings

from aiosmtpd.smtp import AuthResult

from smtp_peer import PolicyHandler, make_controller, parse_args, serve_until_signalled


# aiosmtpd itself reads its deprecated Session.login_data on every AUTH; the warning is noise.
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")


def add_tls_args(parser):
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", default="user")
    parser.add_argument("--password", default="pass")


def main(argv):
    args = parse_args(argv, add_tls_args)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    expected = (args.user.encode(), args.password.encode())

    def authenticate(server, session, envelope, mechanism, data):
        ok = (data.login, data.password) == expected
        # handled=False: with the default (True) a failed AUTH gets no reply at all and
        # the client hangs until its timeout (PEERS.md §2.2, pitfall 1).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    handler = PolicyHandler(args.maildir, args.mode)
    starttls_context = context
    if args.mode == "broken-tls":
        # STARTTLS is offered, but no protocol version is left to agree on: every
        # handshake fails, and plain MAIL is accepted.
        starttls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        starttls_context.load_cert_chain(args.cert, args.key)
        starttls_context.minimum_version = ssl.TLSVersion.TLSv1_3
        starttls_context.maximum_version = ssl.TLSVersion.TLSv1_2
    starttls = make_controller(
        handler,
        args.port,
        args.mode,
        tls_context=starttls_context,
        require_starttls=args.mode != "broken-tls",
        auth_require_tls=True,
        authenticator=authenticate,
    )
    # aiosmtpd 1.4.6 does not count implicit TLS as TLS for AUTH: without
    # auth_require_tls=False it would not advertise AUTH here (PEERS.md §2.2, pitfall 2).
    implicit = make_controller(
        handler,
        args.port + 1,
        args.mode,
        ssl_context=context,
        auth_require_tls=False,
        authenticator=authenticate,
    )
    print(
        f"smtp tls peer: mode {args.mode}, maildir {args.maildir}", file=sys.stderr, flush=True
    )
    serve_until_signalled(
        [starttls, implicit],
        f"smtp tls peer listening on 127.0.0.1:{args.port} (STARTTLS)"
        f" and 127.0.0.1:{args.port + 1} (implicit TLS)",
        args.watch_stdin,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
