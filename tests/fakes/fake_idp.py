"""A small HTTPS OpenID Connect identity provider for tests: discovery, a JWK Set, RS256
tokens, key rotation and failures on command.

    idp = FakeIdP(cert, key, workdir)      # a server certificate for 127.0.0.1/localhost
    idp.start()                            # listens on 127.0.0.1:<free port>
    idp.issuer                             # https://localhost:<port>/realms/test
    token = idp.token("alice", aud="sparkgate")
    new_kid = idp.rotate()                 # a new signing key, published next to the old
    idp.drop(old_kid)                      # the old key leaves the JWK Set
    idp.fail("http_500")                   # every request answers 500 (see FAILURES)
    idp.fail(None)                         # back to normal
    idp.stop() / idp.start()               # down (connection refused) and up again

Only the standard library and the `openssl` CLI (RSA keys, signatures, moduli) are used,
so it runs in the client virtualenv without extra packages. It serves:

    GET {issuer path}/.well-known/openid-configuration
    GET {issuer path}/protocol/openid-connect/certs          (the jwks_uri)

and counts the requests it has answered (`requests[path]`). Run as a script it serves
until killed: `python3 fake_idp.py --cert C --key K [--port P]` prints its issuer.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

# What fail() accepts. Each applies to both documents unless named otherwise.
FAILURES = {
    "http_500": "answer 500 Internal Server Error",
    "redirect": "answer 302 to another URL (must not be followed)",
    "stall": "accept the request and never answer (the gateway's deadline must fire)",
    "garbage": "answer 200 with a body that is not JSON",
    "oversized": "answer 200 with a 2 MiB body",
    "wrong_issuer": "discovery names another issuer",
    "no_jwks_uri": "discovery has no jwks_uri",
    "http_jwks_uri": "discovery's jwks_uri is http://",
    "empty_jwks": "the JWK Set has no keys",
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _openssl(*args: str, data: Optional[bytes] = None) -> bytes:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl CLI is missing")
    done = subprocess.run([openssl, *args], input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


class _Key:
    def __init__(self, directory: Path, kid: str):
        self.kid = kid
        self.path = directory / f"{kid}.key"
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.path))
        modulus = _openssl("rsa", "-in", str(self.path), "-noout", "-modulus").decode().strip()
        self.n = bytes.fromhex(modulus.split("=", 1)[1])

    def jwk(self) -> dict:
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": _b64url(self.n), "e": _b64url((65537).to_bytes(3, "big"))}

    def sign(self, signing_input: bytes) -> bytes:
        return _openssl("dgst", "-sha256", "-sign", str(self.path), data=signing_input)


class FakeIdP:
    def __init__(self, cert: Path, key: Path, workdir: Optional[Path] = None, host: str = "localhost",
                 realm: str = "test", port: int = 0):
        self.cert, self.key = Path(cert), Path(key)
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="fake-idp-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.realm = realm
        self.port = port
        self.requests: Counter = Counter()
        self.failure: Optional[str] = None
        self._lock = threading.Lock()
        self._keys: Dict[str, _Key] = {}     # every key ever made (tokens can still be signed)
        self._published: list = []           # kids in the JWK Set, newest last
        self._serial = 0
        self._server: Optional[http.server.ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.current_kid = self.rotate()

    # ---- what the tests see ----

    @property
    def issuer(self) -> str:
        return f"https://{self.host}:{self.port}/realms/{self.realm}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    def published_kids(self) -> list:
        with self._lock:
            return list(self._published)

    def rotate(self) -> str:
        """Makes a new signing key, publishes it next to the current ones and signs with it
        from now on. Returns its kid."""
        with self._lock:
            self._serial += 1
            kid = f"key-{self._serial}-{int(time.time())}"
        k = _Key(self.dir, kid)
        with self._lock:
            self._keys[kid] = k
            self._published.append(kid)
            self.current_kid = kid
        return kid

    def drop(self, kid: str) -> None:
        """Removes `kid` from the JWK Set (tokens signed with it can still be made)."""
        with self._lock:
            self._published.remove(kid)

    def fail(self, mode: Optional[str]) -> None:
        if mode is not None and mode not in FAILURES:
            raise ValueError(f"unknown failure {mode!r}; one of {sorted(FAILURES)}")
        self.failure = mode

    def token(self, sub: str, aud: str = "sparkgate", kid: Optional[str] = None, ttl_s: int = 600,
              issuer: Optional[str] = None) -> str:
        """An RS256 JWT for `sub` signed with `kid` (default: the current key)."""
        key = self._keys[kid or self.current_kid]
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
        claims = {"iss": issuer or self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + ttl_s}
        signing_input = (_b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())).encode()
        return signing_input.decode() + "." + _b64url(key.sign(signing_input))

    # ---- the server ----

    def start(self) -> "FakeIdP":
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def do_GET(self):
                idp._serve(self)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        server.allow_reuse_address = True
        server.daemon_threads = True
        server.block_on_close = False
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.server_bind()
        server.server_activate()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-idp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Closes the listener: new connections are refused (the port is kept for start())."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        base = f"/realms/{self.realm}"
        discovery = path == base + "/.well-known/openid-configuration"
        jwks = path == base + "/protocol/openid-connect/certs"
        with self._lock:
            self.requests[path] += 1
        mode = self.failure
        if not (discovery or jwks):
            return self._send(h, 404, b'{"error":"not found"}')
        if mode == "http_500":
            return self._send(h, 500, b'{"error":"server error"}')
        if mode == "redirect":
            return self._send(h, 302, b"", {"Location": f"https://{self.host}:{self.port}/elsewhere"})
        if mode == "stall":
            time.sleep(60)
            return
        if mode == "garbage":
            return self._send(h, 200, b"<html>not json</html>")
        if mode == "oversized":
            return self._send(h, 200, b'{"keys":[' + b" " * (2 * 1024 * 1024) + b"]}")
        if discovery:
            doc = {"issuer": self.issuer, "jwks_uri": self.jwks_uri,
                   "authorization_endpoint": f"{self.issuer}/protocol/openid-connect/auth",
                   "token_endpoint": f"{self.issuer}/protocol/openid-connect/token",
                   "id_token_signing_alg_values_supported": ["RS256"]}
            if mode == "wrong_issuer":
                doc["issuer"] = f"https://{self.host}:{self.port}/realms/other"
            if mode == "no_jwks_uri":
                del doc["jwks_uri"]
            if mode == "http_jwks_uri":
                doc["jwks_uri"] = doc["jwks_uri"].replace("https://", "http://", 1)
            return self._send(h, 200, json.dumps(doc).encode())
        with self._lock:
            keys = [] if mode == "empty_jwks" else [self._keys[k].jwk() for k in self._published]
        return self._send(h, 200, json.dumps({"keys": keys}).encode())

    @staticmethod
    def _send(h, status: int, body: bytes, headers: Optional[dict] = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        try:
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the gateway hung up (a capped body)
        h.close_connection = True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="localhost", help="the host name in the issuer URL")
    args = ap.parse_args()
    idp = FakeIdP(Path(args.cert), Path(args.key), host=args.host, port=args.port).start()
    print(json.dumps({"issuer": idp.issuer, "kid": idp.current_kid, "token": idp.token("alice")}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        idp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
