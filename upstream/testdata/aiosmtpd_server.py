"""A STARTTLS+AUTH SMTP server for the upstream package's interop test.

Usage: aiosmtpd_server.py CERT KEY USER PASSWORD OUTDIR [FLAGS]
FLAGS is a comma-separated list: "no8bitmime" leaves 8BITMIME out of the
EHLO reply, "smtputf8" offers SMTPUTF8.
Prints the port on stdout once ready, then serves until stdin closes.
"""
import os
import socket
import ssl
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

warnings.filterwarnings("ignore", category=DeprecationWarning)

cert, key, user, password, outdir = sys.argv[1:6]
flags = sys.argv[6].split(",") if len(sys.argv) > 6 else []


class Handler:
    def __init__(self):
        self.n = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if "no8bitmime" in flags:
            responses = [r for r in responses if r[4:] != "8BITMIME"]
        return responses

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        path = os.path.join(outdir, "msg%d" % self.n)
        with open(path + ".tmp", "wb") as f:
            f.write(b"FROM " + envelope.mail_from.encode() + b"\n")
            for r in envelope.rcpt_tos:
                f.write(b"TO " + r.encode() + b"\n")
            f.write(b"AUTH " + (session.auth_data or b"") + b"\n")
            f.write(b"\n")
            f.write(envelope.original_content)
        with open(path + ".opts", "w") as f:
            f.write(" ".join(envelope.mail_options))
        os.rename(path + ".tmp", path)
        return "250 2.0.0 OK queued"


def authenticator(server, session, envelope, mechanism, auth_data):
    if (isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()):
        return AuthResult(success=True, auth_data=auth_data.login)
    return AuthResult(success=False, handled=False)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()

controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=port,
    tls_context=ctx,
    require_starttls=True,
    authenticator=authenticator,
    auth_require_tls=True,
    enable_SMTPUTF8="smtputf8" in flags,
)
controller.start()
print(port, flush=True)
sys.stdin.read()
controller.stop()
