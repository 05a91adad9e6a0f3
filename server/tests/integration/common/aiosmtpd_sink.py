"""A real SMTP server for connvault's mail tests: aiosmtpd (PyPI) with its default limits, which
enforce RFC 5321 (a line over 1000 octets with its CRLF is refused: "500 Line too long").

Started by server/tests/integration/common/aiosmtpd.rs on 127.0.0.1 and an ephemeral port, which it prints as
"PORT <n>" on standard output once it listens. Each accepted message is written to DIR as
NNNN.eml (the DATA as received on the wire, dot-unstuffed) and NNNN.json (envelope and AUTH).

    python aiosmtpd_sink.py DIR [--auth "PLAIN LOGIN"] [--refuse-rcpt]

--auth offers those mechanisms (plain text allowed: the tests run on loopback) and accepts any
credentials, recording them; without it no AUTH is offered. --refuse-rcpt answers every RCPT
TO with 550.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

ALL_MECHANISMS = {"PLAIN", "LOGIN"}


class Sink:
    def __init__(self, folder, refuse_rcpt):
        self.folder = folder
        self.refuse_rcpt = refuse_rcpt
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return f"550 5.1.1 {address}: mailbox unavailable, no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        stem = os.path.join(self.folder, f"{self.count:04d}")
        auth = session.auth_data
        facts = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mechanism": getattr(session, "connvault_mechanism", None),
            "auth": [auth.login.decode(), auth.password.decode()] if isinstance(auth, LoginPassword) else None,
        }
        # The message first, its facts last: a reader that sees the .json sees the whole .eml.
        with open(stem + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(stem + ".json.tmp", "w") as f:
            json.dump(facts, f)
        os.replace(stem + ".json.tmp", stem + ".json")
        return "250 2.0.0 OK queued"


def authenticator(server, session, envelope, mechanism, auth_data):
    session.connvault_mechanism = mechanism
    return AuthResult(success=isinstance(auth_data, LoginPassword), auth_data=auth_data)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--auth", default="")
    parser.add_argument("--refuse-rcpt", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    offered = set(args.auth.split())
    handler = Sink(args.folder, args.refuse_rcpt)

    def factory():
        if not offered:
            return SMTP(handler, hostname="mail.test")
        return SMTP(
            handler,
            hostname="mail.test",
            authenticator=authenticator,
            auth_require_tls=False,
            auth_exclude_mechanism=ALL_MECHANISMS - offered,
        )

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", args.port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    # Also stop when the test process goes away (its end of our stdin closes).
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
