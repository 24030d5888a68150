"""JWT keys from an OpenID Connect provider (auth.jwt[].discovery / jwks_uri), end to end:
real PySpark over TLS through sparkgate to the real Spark Connect server, with the keys
fetched over HTTPS from tests/fakes/fake_idp.py (a small provider serving discovery and
a JWK Set, which rotates, drops keys, fails and goes down on command; its certificate
comes from the test CA).

Each test starts its own provider and gateway (both start in about a second); the Spark
server is the session's. Timing: refresh_interval and min_refresh_interval are set to a
second or two here so that a refresh is seen within a few seconds.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from conftest import CertAuthority, Gateway, free_port
from test_auth import Sessions, describe, error_of, grpc_message, works

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from fake_idp import FakeIdP  # noqa: E402


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------

def wait_for(what: str, cond: Callable[[], object], timeout_s: float = 15.0, gw: Optional[Gateway] = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    detail = f"\ngateway log:\n{gw.log_text()[-3000:]}" if gw is not None else ""
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}{detail}", pytrace=False)


def fetches(gw: Gateway, issuer: str, result: str) -> int:
    status, text = gw.admin("GET", "/metrics")
    assert status == 200
    total = 0
    for line in text.splitlines():
        if not line.startswith("sparkgate_jwks_fetches_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        if f'issuer="{issuer}"' in labels and f'result="{result}"' in labels:
            total += int(float(value))
    return total


def remote_state(gw: Gateway, issuer: str) -> dict:
    import json
    status, text = gw.admin("GET", "/v1/config")
    assert status == 200, text
    for j in json.loads(text)["auth"]["jwt"]:
        if j["issuer"] == issuer:
            return j["remote"]
    raise AssertionError(f"issuer {issuer} not in /v1/config")


def jwt_yaml(issuer: str, ca: Optional[Path], source: str = "discovery: true", refresh: str = "10m",
             min_refresh: str = "1s") -> str:
    ca_line = f"      ca_file: {ca}\n" if ca is not None else ""
    return ("auth:\n"
            "  jwt:\n"
            f"    - issuer: {issuer}\n"
            f"      {source}\n"
            f"{ca_line}"
            "      audience: sparkgate\n"
            f"      refresh_interval: {refresh}\n"
            f"      min_refresh_interval: {min_refresh}\n"
            "  anonymous: deny\n"
            "identity:\n"
            "  mode: enforce\n")


@pytest.fixture
def idp(tmp_path) -> Iterator[FakeIdP]:
    ca = CertAuthority.shared()
    cert, key = ca.issue_server(tmp_path / "idp-tls", "idp")
    provider = FakeIdP(cert, key, tmp_path / "idp")
    yield provider
    provider.stop()


@pytest.fixture
def session(spark_server) -> Iterator[Sessions]:
    factory = Sessions()
    yield factory
    factory.close()


def start_gateway(spark_server, tmp_path: Path, yaml: str) -> Gateway:
    gw = Gateway(tmp_path / "gateway", spark_server.port, log_level="debug", tls=True, extra_yaml=yaml)
    return gw.start()


@pytest.fixture
def gateways() -> Iterator[list]:
    started: list = []
    yield started
    for gw in started:
        crashed = gw.crashed()
        gw.stop()
        assert crashed is None, crashed


# ----------------------------------------------------------------------------------------
# With PySpark
# ----------------------------------------------------------------------------------------

def test_provider_token_works_and_config_shows_the_keys(spark_server, idp, tmp_path, session, gateways):
    idp.start()
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert))
    gateways.append(gw)
    state = wait_for("the first fetch", lambda: (s := remote_state(gw, idp.issuer))["key_ids"] and s, gw=gw)
    assert state["key_ids"] == [idp.current_kid]
    assert state["fetched_jwks_uri"] == idp.jwks_uri
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", state["fetched_at"])
    assert state["last_error"] is None
    assert fetches(gw, idp.issuer, "ok") == 1
    assert idp.requests["/realms/test/.well-known/openid-configuration"] == 1

    works(session(gw, "alice", idp.token("alice")))
    # The provider's token for another audience, and one naming alice for bob, are refused.
    e = error_of(lambda: session(gw, "alice", idp.token("alice", aud="other")).range(1).count())
    assert e.getGrpcStatusCode().name == "UNAUTHENTICATED", describe(e)
    e = error_of(lambda: session(gw, "bob", idp.token("alice")).range(1).count())
    assert e.getGrpcStatusCode().name == "PERMISSION_DENIED", describe(e)


def test_rotated_key_works_at_the_first_try(spark_server, idp, tmp_path, session, gateways):
    idp.start()
    old = idp.current_kid
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert))
    gateways.append(gw)
    wait_for("the first fetch", lambda: remote_state(gw, idp.issuer)["key_ids"], gw=gw)
    new = idp.rotate()
    time.sleep(1.2)  # past min_refresh_interval (1s) since the startup fetch
    # refresh_interval is 10m: only the unknown kid can make the gateway fetch again.
    works(session(gw, "alice", idp.token("alice")))
    assert fetches(gw, idp.issuer, "ok") == 2
    assert remote_state(gw, idp.issuer)["key_ids"] == [old, new]
    works(session(gw, "alice", idp.token("alice", kid=old)))
    assert fetches(gw, idp.issuer, "ok") == 2  # a known kid fetches nothing
    assert "waiting for a refresh of the issuer's keys" in gw.log_text()


def test_unknown_kid_refetch_is_rate_limited(spark_server, idp, tmp_path, session, gateways):
    idp.start()
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert,
                                                       min_refresh="30s"))
    gateways.append(gw)
    wait_for("the first fetch", lambda: remote_state(gw, idp.issuer)["key_ids"], gw=gw)
    idp.rotate()
    # Within min_refresh_interval of the startup fetch: no fetch, refused at once.
    t0 = time.monotonic()
    e = error_of(lambda: session(gw, "alice", idp.token("alice")).range(1).count())
    assert time.monotonic() - t0 < 5
    assert e.getGrpcStatusCode().name == "UNAUTHENTICATED", describe(e)
    assert f"has no RS256 key with kid '{idp.current_kid}'" in grpc_message(e)
    assert "refreshed too recently" in grpc_message(e)
    assert fetches(gw, idp.issuer, "ok") == 1


def test_dropped_key_is_refused_after_the_next_refresh(spark_server, idp, tmp_path, session, gateways):
    idp.start()
    old = idp.current_kid
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert, refresh="2s"))
    gateways.append(gw)
    wait_for("the first fetch", lambda: remote_state(gw, idp.issuer)["key_ids"], gw=gw)
    old_token = idp.token("alice", kid=old)
    works(session(gw, "alice", old_token))
    new = idp.rotate()
    idp.drop(old)
    wait_for("a refresh without the dropped key", lambda: remote_state(gw, idp.issuer)["key_ids"] == [new], gw=gw)
    e = error_of(lambda: session(gw, "alice", old_token).range(1).count())
    assert e.getGrpcStatusCode().name == "UNAUTHENTICATED", describe(e)
    assert f"has no RS256 key with kid '{old}'" in grpc_message(e)
    works(session(gw, "alice", idp.token("alice")))


def test_provider_down_cached_key_keeps_working(spark_server, idp, tmp_path, session, gateways):
    idp.start()
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert, refresh="1s"))
    gateways.append(gw)
    wait_for("the first fetch", lambda: remote_state(gw, idp.issuer)["key_ids"], gw=gw)
    kid = idp.current_kid
    token = idp.token("alice")
    spark = session(gw, "alice", token)
    works(spark)
    idp.stop()
    wait_for("two failed fetches", lambda: fetches(gw, idp.issuer, "unreachable") >= 2, gw=gw)
    works(spark)                           # the same session, every RPC re-verified
    works(session(gw, "alice", token))     # and a new one
    state = remote_state(gw, idp.issuer)
    assert state["key_ids"] == [kid]
    assert "cannot connect" in state["last_error"]
    assert state["consecutive_failures"] >= 2
    assert "keeping the 1 keys fetched before" in gw.log_text()
    ok = fetches(gw, idp.issuer, "ok")
    idp.start()                            # back on the same port
    wait_for("a fetch after the provider is back", lambda: fetches(gw, idp.issuer, "ok") > ok, timeout_s=20, gw=gw)
    assert remote_state(gw, idp.issuer)["last_error"] is None


def test_provider_down_at_startup(spark_server, idp, tmp_path, session, gateways):
    idp.port = free_port()                 # the issuer URL names it; nothing listens yet
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert))
    gateways.append(gw)                    # the gateway started without the provider
    wait_for("a failed fetch", lambda: fetches(gw, idp.issuer, "unreachable") >= 1, gw=gw)
    e = error_of(lambda: session(gw, "alice", idp.token("alice")).range(1).count())
    assert e.getGrpcStatusCode().name == "UNAUTHENTICATED", describe(e)
    msg = grpc_message(e)
    assert f"JWT issuer '{idp.issuer}' has no keys yet: fetching them failed" in msg
    assert "cannot connect" in msg
    status, text = gw.admin("GET", "/metrics")
    m = re.search(r'^sparkgate_auth_failures_total\{reason="keys_unavailable"\} (\S+)$', text, re.M)
    assert m and float(m.group(1)) >= 1, text
    idp.start()
    # Retried with a backoff (1 s, 2 s, 4 s, ...).
    wait_for("the retry that succeeds", lambda: remote_state(gw, idp.issuer)["key_ids"], timeout_s=20, gw=gw)
    works(session(gw, "alice", idp.token("alice")))


def test_reload_keeps_the_keys_and_an_invalid_reload_keeps_the_config(spark_server, idp, tmp_path, session,
                                                                      gateways):
    idp.start()
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert))
    gateways.append(gw)
    wait_for("the first fetch", lambda: remote_state(gw, idp.issuer)["key_ids"], gw=gw)
    good = gw.config.read_text()
    # An invalid config (an http:// jwks_uri) is refused; the gateway keeps the old one.
    gw.config.write_text(good.replace("discovery: true", "jwks_uri: http://localhost/keys"))
    gw.proc.send_signal(signal.SIGHUP)
    wait_for("the refused reload", lambda: "auth.jwt.jwks_uri: URL 'http://localhost/keys' is not https://"
             in gw.log_text(), gw=gw)
    assert remote_state(gw, idp.issuer)["discovery"] is True
    works(session(gw, "alice", idp.token("alice")))
    # A valid reload that leaves the issuer unchanged keeps its keys: no new fetch.
    gw.config.write_text(good.replace("  anonymous: deny\n", "  anonymous: deny\n  forward_client_credentials: false\n"))
    gw.proc.send_signal(signal.SIGHUP)
    wait_for("the reload", lambda: gw.log_text().count("configuration reloaded") >= 1, gw=gw)
    assert fetches(gw, idp.issuer, "ok") == 1
    # One that changes its source fetches again, from the new source.
    gw.config.write_text(good.replace("discovery: true", f"jwks_uri: {idp.jwks_uri}"))
    gw.proc.send_signal(signal.SIGHUP)
    wait_for("a fetch from the new source", lambda: fetches(gw, idp.issuer, "ok") == 2, gw=gw)
    assert remote_state(gw, idp.issuer)["jwks_uri"] == idp.jwks_uri
    works(session(gw, "alice", idp.token("alice")))


# ----------------------------------------------------------------------------------------
# Fetch failures (the gateway and the provider alone)
# ----------------------------------------------------------------------------------------

FAILURES = [
    # (fail mode, sparkgate_jwks_fetches_total result, fragment of the error)
    ("http_500", "http_status", "answered HTTP 500"),
    ("redirect", "http_status", "(a redirect to https://localhost:"),
    ("garbage", "invalid", "not a JSON object"),
    ("oversized", "too_large", "larger than 1048576 bytes"),
    ("wrong_issuer", "invalid", "names issuer 'https://localhost:"),
    ("no_jwks_uri", "invalid", "has no \"jwks_uri\""),
    ("http_jwks_uri", "invalid", "is not https://"),
    ("empty_jwks", "invalid", "no usable key"),
]


def test_each_fetch_failure_keeps_the_keys_and_is_counted(spark_server, idp, tmp_path, gateways):
    idp.start()
    gw = start_gateway(spark_server, tmp_path, jwt_yaml(idp.issuer, CertAuthority.shared().cert, refresh="1s"))
    gateways.append(gw)
    wait_for("the first fetch", lambda: remote_state(gw, idp.issuer)["key_ids"], gw=gw)
    kid = idp.current_kid
    for mode, result, fragment in FAILURES:
        before = fetches(gw, idp.issuer, result)
        idp.fail(mode)
        wait_for(f"a {mode} failure", lambda: fetches(gw, idp.issuer, result) > before, gw=gw)
        state = remote_state(gw, idp.issuer)
        assert fragment in (state["last_error"] or ""), (mode, state)
        assert state["key_ids"] == [kid], mode
        idp.fail(None)
        ok = fetches(gw, idp.issuer, "ok")
        wait_for(f"recovery after {mode}", lambda: fetches(gw, idp.issuer, "ok") > ok, gw=gw)
    assert "failed (too_large)" in gw.log_text()


def test_certificate_and_host_name_are_verified(spark_server, tmp_path, gateways):
    ca = CertAuthority.shared()
    # A certificate for the name localhost only: reached as 127.0.0.1 it does not match.
    cert, key = ca.issue(tmp_path / "idp-tls", "idp", "/CN=localhost", [
        "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth", "subjectAltName=DNS:localhost"])
    idp = FakeIdP(cert, key, tmp_path / "idp").start()
    try:
        by_ip = f"https://127.0.0.1:{idp.port}/realms/test/protocol/openid-connect/certs"
        gw = start_gateway(spark_server, tmp_path, jwt_yaml("https://idp.by-ip", ca.cert, source=f"jwks_uri: {by_ip}"))
        gateways.append(gw)
        wait_for("a refused handshake", lambda: fetches(gw, "https://idp.by-ip", "tls") >= 1, gw=gw)
        assert "certificate verification failed" in remote_state(gw, "https://idp.by-ip")["last_error"]
        # The right name, but the test CA is not in the system trust store (no ca_file).
        gw2 = start_gateway(spark_server, tmp_path / "2", jwt_yaml(idp.issuer, None))
        gateways.append(gw2)
        wait_for("a refused handshake", lambda: fetches(gw2, idp.issuer, "tls") >= 1, gw=gw2)
        assert "certificate verification failed" in remote_state(gw2, idp.issuer)["last_error"]
        assert idp.requests == {}  # nothing was ever sent over an unverified connection
    finally:
        idp.stop()
