"""SIGHUP reloads the TLS certificate and the JWT keys without dropping a
connection (issue 29, item 3): it ended the server before (exit 129, no 1001).

New handshakes use the new files; a file that does not load keeps the old one,
with one ERROR line.
"""

from __future__ import annotations

import signal
import ssl
import time
from pathlib import Path

import jwt
import trio
import trustme
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from .processes import Process, run_cli

TIMEOUT = 20


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def started(server: Process) -> str:
    line = await server.readline()
    while not line.startswith("Listening on "):
        line = await server.readline()
    return line.split()[2]


async def until_line(server: Process, text: str) -> str:
    line = await server.readline()
    while text not in line:
        line = await server.readline()
    return line


async def test_sighup_reloads_the_certificate_and_keeps_connections(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"

    def install(ca: trustme.CA) -> None:
        issued = ca.issue_cert("127.0.0.1")
        issued.cert_chain_pems[0].write_to_path(str(cert_file))
        issued.private_key_pem.write_to_path(str(key_file))

    install(old_ca)
    flags = ["--certfile", str(cert_file), "--keyfile", str(key_file), "--log-level", "info"]
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", *flags, merged=True) as server:
            url = (await started(server)).replace("ws://", "wss://") + "/r"
            async with connect(url, ssl=client_context(old_ca), proxy=None) as before:
                install(new_ca)
                server.process.send_signal(signal.SIGHUP)
                await until_line(server, "SIGHUP: reloaded the certificate")
                async with connect(url, ssl=client_context(new_ca), proxy=None) as after:
                    await after.send("new certificate")
                    assert await before.recv() == "new certificate"  # still open
                cert_file.write_text("not a certificate")
                server.process.send_signal(signal.SIGHUP)
                error = await until_line(server, "SIGHUP: kept the old certificate")
                async with connect(url, ssl=client_context(new_ca), proxy=None) as again:
                    await again.send("kept")
                    assert await before.recv() == "kept"
            server.interrupt()
            assert await server.process.wait() == 0
    assert "ERROR" in error


async def test_sighup_reloads_the_jwt_public_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def keypair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        private = ec.generate_private_key(ec.SECP256R1())
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return private, public

    old, old_public = keypair()
    new, new_public = keypair()
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(old_public)

    def token(private: ec.EllipticCurvePrivateKey) -> str:
        claims = {"exp": int(time.time() + 60), "rooms": {"r": "rw"}, "sub": "k"}
        return jwt.encode(claims, private, algorithm="ES256")

    flags = ["--jwt-public-key", str(key_file), "--log-level", "info"]
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", *flags, merged=True) as server:
            base = await started(server)
            async with connect(f"{base}/r?token={token(old)}", proxy=None) as before:
                key_file.write_bytes(new_public)
                server.process.send_signal(signal.SIGHUP)
                await until_line(server, "SIGHUP: reloaded the JWT keys")
                async with connect(f"{base}/r?token={token(new)}", proxy=None) as after:
                    await after.send("signed anew")
                    assert await before.recv() == "signed anew"  # still open
                try:
                    async with connect(f"{base}/r?token={token(old)}", proxy=None):
                        raise AssertionError("the old key still opens the door")
                except InvalidStatus as refused:
                    assert refused.response.status_code == 401
            server.interrupt()
            assert await server.process.wait() == 0
