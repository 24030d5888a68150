"""Authentication, identity and quotas end to end: real PySpark over TLS with a bearer
token, through sparkgate, to the session's real Spark Connect server.

How PySpark is made to trust the test CA (checked with grpcio 1.85.3, pyspark-client 4.2.0)
------------------------------------------------------------------------------------------
* `sc://HOST:PORT/;token=...` (or `;use_ssl=true`) makes PySpark's DefaultChannelBuilder
  use `grpc.ssl_channel_credentials()` with no arguments, i.e. grpc's *default* roots.
* grpc core takes the default roots from the file named by the environment variable
  `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` (before its bundled roots.pem). That works in-process
  too: setting `os.environ[...]` after `import grpc`, and even after insecure channels
  have made calls, is honoured. But the default roots are loaded once, by the first
  secure channel that uses them, and cached for the life of the process: set the variable
  after that (or change it to another CA) and it is ignored (the handshake keeps failing
  with CERTIFICATE_VERIFY_FAILED). So for a user, exporting the variable before starting
  Python is reliable; inside a test process it is order dependent.
* What is reliable in-process is a channel builder with explicit roots:
  `pyspark.sql.connect.session.SparkSession.builder.channelBuilder(b).create()` where `b`
  subclasses `pyspark.sql.connect.client.DefaultChannelBuilder` and overrides `toChannel()`
  to build `grpc.ssl_channel_credentials(root_certificates=<CA PEM>)`, composed with
  `grpc.access_token_call_credentials(token)` (conftest.tls_channel_builder). Note
  `channelBuilder()` exists only on the Connect SparkSession builder, not on
  `pyspark.sql.SparkSession.builder`. The tests here use that builder;
  test_env_var_trusts_ca_in_a_fresh_process checks the environment-variable recipe in a
  child process, and that without it the CA is not trusted.
* Host `localhost` with `token=` but without `use_ssl=true` gets
  `grpc.local_channel_credentials()`: no TLS at all, the token goes out in plain h2c (the
  gateway logs "TLS handshake failed: wrong version number"). Use 127.0.0.1 (or any name
  other than localhost), or add `;use_ssl=true`.
* `user_id=` is always in the connection string: PySpark otherwise takes $USER, which is
  empty here.

Which user Spark runs a session as (checked with Spark 4.2.1)
-------------------------------------------------------------
`SELECT current_user()` does NOT show the Spark Connect user: with user_id=bob it returns
the server process's OS user (root here). What does show it:
* sessions are keyed by (user_id, session_id): a temp view made in session S by user U is
  visible to another client that connects straight to the server with session_id=S and
  user_id=U, and not with any other user_id (that creates a new, empty session);
* the server log names the user: "Session with userId: U and sessionId: S accessed" and
  "ExecuteKey(U,S,<operation id>)".
The rewrite test uses both.

Gateways (all TLS, all in front of the session-scoped spark_server):
    plain_gw    no auth: the TLS listener alone, passes everything through
    auth_gw     tokens for alice and bob, anonymous: deny, identity: enforce
    rewrite_gw  the same tokens, identity: rewrite
    quota_gw    the same tokens, identity: enforce, quotas.default.max_sessions: 2
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import textwrap
from typing import Iterator, List, Optional

import grpc
import pytest
from pyspark.errors.exceptions.connect import SparkConnectGrpcException
from pyspark.sql import SparkSession
from pyspark.sql.connect.client.retries import DefaultPolicy

from conftest import Gateway, tls_session, token_sha256

ALICE_TOKEN = "sgt-alice-" + secrets.token_hex(16)
BOB_TOKEN = "sgt-bob-" + secrets.token_hex(16)
WRONG_TOKEN = "sgt-wrong-" + secrets.token_hex(16)

AUTH_YAML = (
    "auth:\n"
    "  tokens:\n"
    f"    - sha256: \"{token_sha256(ALICE_TOKEN)}\"\n"
    "      user: alice\n"
    "      groups: [analysts]\n"
    "      tenant: acme\n"
    f"    - sha256: \"{token_sha256(BOB_TOKEN)}\"\n"
    "      user: bob\n"
    "      groups: [engineers]\n"
    "      tenant: acme\n"
    "  anonymous: deny\n")


def _quick_retries() -> DefaultPolicy:
    # PySpark retries UNAVAILABLE (a failed TLS handshake, too) 15 times over ~10 minutes
    # by default; here a call that keeps failing gives up after ~0.75 s.
    return DefaultPolicy(max_retries=4, initial_backoff=50, backoff_multiplier=2.0, max_backoff=400,
                         jitter=0, min_jitter_threshold=10_000, recognize_server_retry_delay=False)


# ----------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------

def _gateway(spark_server, tmp_path_factory, name: str, extra_yaml: str) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp(name), spark_server.port, log_level="debug",
                 tls=True, extra_yaml=extra_yaml)
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def plain_gw(spark_server, tmp_path_factory) -> Iterator[Gateway]:
    yield from _gateway(spark_server, tmp_path_factory, "gateway-tls", "")


@pytest.fixture(scope="module")
def auth_gw(spark_server, tmp_path_factory) -> Iterator[Gateway]:
    yield from _gateway(spark_server, tmp_path_factory, "gateway-auth",
                        AUTH_YAML + "identity:\n  mode: enforce\n")


@pytest.fixture(scope="module")
def rewrite_gw(spark_server, tmp_path_factory) -> Iterator[Gateway]:
    yield from _gateway(spark_server, tmp_path_factory, "gateway-rewrite",
                        AUTH_YAML + "identity:\n  mode: rewrite\n")


@pytest.fixture(scope="module")
def quota_gw(spark_server, tmp_path_factory) -> Iterator[Gateway]:
    yield from _gateway(spark_server, tmp_path_factory, "gateway-quota",
                        AUTH_YAML + "identity:\n  mode: enforce\nquotas:\n  default: {max_sessions: 2}\n")


class Sessions:
    """Distinct SparkSessions over TLS (trusting the gateway's CA), with quick retries;
    stopped at the end of the test."""

    def __init__(self):
        self.sessions: List[SparkSession] = []

    def __call__(self, gw: Gateway, user: str, token: Optional[str] = None, use_ssl: bool = False,
                 session_id: Optional[str] = None) -> SparkSession:
        url = f"{gw.url}/;user_id={user}"
        if token is not None:
            url += f";token={token}"
        if use_ssl:
            url += ";use_ssl=true"
        if session_id is not None:
            url += f";session_id={session_id}"
        s = tls_session(url, gw.ca_path)
        s.client.set_retry_policies([_quick_retries()])
        self.sessions.append(s)
        return s

    def close(self) -> None:
        for s in self.sessions:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - a refused session cannot be released
                print(f"stopping session failed: {e}")


@pytest.fixture
def session(spark_server) -> Iterator[Sessions]:
    factory = Sessions()
    yield factory
    factory.close()
    if spark_server.proc is not None and spark_server.proc.poll() is not None:
        pytest.fail(f"spark_server exited with {spark_server.proc.returncode}; log {spark_server.log}",
                    pytrace=False)


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------

def error_of(fn) -> SparkConnectGrpcException:
    with pytest.raises(SparkConnectGrpcException) as info:
        fn()
    return info.value


def grpc_message(e: SparkConnectGrpcException) -> str:
    """The grpc-message of an error (PySpark wraps a status without details in the repr
    of the whole RPC error)."""
    m = re.search(r'details = "(.*)"', str(e))
    return m.group(1) if m else str(e)


def describe(e: SparkConnectGrpcException) -> str:
    return f"{e.getGrpcStatusCode().name}: {grpc_message(e)}"


def works(spark: SparkSession) -> None:
    assert spark.range(10).count() == 10
    rows = spark.sql("SELECT id * 2 AS v FROM range(5) WHERE id % 2 = 1 ORDER BY v").collect()
    assert [r.v for r in rows] == [2, 6]


def assert_token_not_leaked(token: str, e: Optional[BaseException], *gateways: Gateway) -> None:
    if e is not None:
        assert token not in str(e) and token not in repr(e), f"the error echoes the token: {e!r}"
    for gw in gateways:
        for log in (gw.log, gw.access_log):
            assert token not in log.read_text(errors="replace"), f"{log} contains the token"


# ----------------------------------------------------------------------------------------
# TLS alone (no auth configured: the gateway passes requests through)
# ----------------------------------------------------------------------------------------

def test_tls_listener_with_token_and_with_use_ssl(plain_gw, session):
    works(session(plain_gw, "alice", token=ALICE_TOKEN))
    works(session(plain_gw, "carol", use_ssl=True))


def test_tls_listener_is_not_trusted_without_the_ca(plain_gw, session):
    # The connection string alone: grpc's default roots, which do not hold the test CA.
    s = SparkSession.builder.remote(f"{plain_gw.url}/;user_id=alice;token={ALICE_TOKEN}").create()
    s.client.set_retry_policies([_quick_retries()])
    session.sessions.append(s)
    s.release_session_on_close = False
    e = error_of(lambda: s.range(1).count())
    assert e.getGrpcStatusCode() == grpc.StatusCode.UNAVAILABLE, describe(e)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e), describe(e)


def test_env_var_trusts_ca_in_a_fresh_process(plain_gw, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pyspark.sql import SparkSession
        from pyspark.sql.connect.client.retries import DefaultPolicy
        s = SparkSession.builder.remote(sys.argv[1]).create()
        s.client.set_retry_policies([DefaultPolicy(max_retries=2, initial_backoff=50, max_backoff=100)])
        s.release_session_on_close = False
        try:
            print("COUNT", s.range(7).count())
        except Exception as e:
            print("ERROR", str(e).replace("\\n", " ")[:400])
    """))
    url = f"{plain_gw.url}/;user_id=alice;token={ALICE_TOKEN}"

    def run(env_extra: dict) -> str:
        env = {k: v for k, v in os.environ.items() if k != "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"}
        env.update(env_extra)
        done = subprocess.run([sys.executable, str(script), url], env=env, capture_output=True,
                              text=True, timeout=120)
        return done.stdout + done.stderr[-2000:]

    trusted = run({"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(plain_gw.ca_path)})
    assert "COUNT 7" in trusted, trusted
    untrusted = run({})
    assert "COUNT" not in untrusted and "CERTIFICATE_VERIFY_FAILED" in untrusted, untrusted


# ----------------------------------------------------------------------------------------
# Authentication
# ----------------------------------------------------------------------------------------

def test_alice_with_her_token(auth_gw, session):
    works(session(auth_gw, "alice", token=ALICE_TOKEN))
    works(session(auth_gw, "bob", token=BOB_TOKEN))
    assert_token_not_leaked(ALICE_TOKEN, None, auth_gw)
    assert_token_not_leaked(BOB_TOKEN, None, auth_gw)


def test_wrong_token_is_unauthenticated(auth_gw, session):
    s = session(auth_gw, "alice", token=WRONG_TOKEN)
    e = error_of(lambda: s.range(3).count())
    assert e.getGrpcStatusCode() == grpc.StatusCode.UNAUTHENTICATED, describe(e)
    assert re.search(r"(?i)\b(unknown|invalid|unrecognized)\b.*\btoken\b", grpc_message(e)), describe(e)
    assert_token_not_leaked(WRONG_TOKEN, e, auth_gw)
    # Every RPC is refused, not only ExecutePlan.
    e = error_of(lambda: s.conf.get("spark.sql.shuffle.partitions"))
    assert e.getGrpcStatusCode() == grpc.StatusCode.UNAUTHENTICATED, describe(e)
    assert_token_not_leaked(WRONG_TOKEN, e, auth_gw)


def test_missing_credential_is_unauthenticated(auth_gw, session):
    # TLS (use_ssl=true) but no token: no credential at all, and anonymous: deny.
    s = session(auth_gw, "alice", use_ssl=True)
    e = error_of(lambda: s.range(3).count())
    assert e.getGrpcStatusCode() == grpc.StatusCode.UNAUTHENTICATED, describe(e)
    message = grpc_message(e).lower()
    assert any(w in message for w in ("missing", "no credential", "no bearer", "no token", "required",
                                      "without")), describe(e)
    assert any(w in message for w in ("credential", "token", "authoriz")), describe(e)


# ----------------------------------------------------------------------------------------
# Identity
# ----------------------------------------------------------------------------------------

def test_enforce_refuses_another_user_id(auth_gw, session):
    s = session(auth_gw, "bob", token=ALICE_TOKEN)
    e = error_of(lambda: s.range(3).count())
    assert e.getGrpcStatusCode() == grpc.StatusCode.PERMISSION_DENIED, describe(e)
    assert grpc_message(e) == "user_id 'bob' does not match authenticated user 'alice'", describe(e)
    assert_token_not_leaked(ALICE_TOKEN, e, auth_gw)


def test_rewrite_runs_the_session_as_the_token_user(rewrite_gw, spark_server, session):
    spark = session(rewrite_gw, "bob", token=ALICE_TOKEN)
    works(spark)
    sid = spark.session_id
    view = "rewrite_marker_" + secrets.token_hex(4)
    spark.createDataFrame([(42, "via-gateway")], "n INT, tag STRING").createOrReplaceTempView(view)

    # Straight to the server: the session (alice, sid) holds the view, (bob, sid) does not
    # exist (asking for it creates a new, empty one).
    def views_of(user: str) -> List[str]:
        s = SparkSession.builder.remote(f"{spark_server.url}/;user_id={user};session_id={sid}").create()
        s.client.set_retry_policies([_quick_retries()])
        try:
            return [t.name for t in s.catalog.listTables() if t.isTemporary]
        finally:
            # (alice, sid) is the gateway's session, released when the test ends.
            s.release_session_on_close = user != "alice"
            s.stop()

    assert view in views_of("alice"), f"session {sid} of user alice on the server has no view {view}"
    assert view not in views_of("bob"), f"session {sid} of user bob on the server has the view {view}"

    # The server log names the user of every operation of that session.
    log = spark_server.log.read_text(errors="replace")
    assert f"ExecuteKey(alice,{sid}," in log
    assert f"Session with userId: alice and sessionId: {sid}" in log


# ----------------------------------------------------------------------------------------
# Quotas
# ----------------------------------------------------------------------------------------

def test_max_sessions_per_user(quota_gw, session):
    first, second = (session(quota_gw, "alice", token=ALICE_TOKEN) for _ in range(2))
    works(first)
    works(second)
    third = session(quota_gw, "alice", token=ALICE_TOKEN)
    e = error_of(lambda: third.range(3).count())
    assert e.getGrpcStatusCode() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(e)
    message = grpc_message(e)
    assert "max_sessions" in message and re.search(r"\b2\b", message) and "alice" in message, describe(e)
    # The quota is per user: bob is not affected.
    works(session(quota_gw, "bob", token=BOB_TOKEN))

    # ReleaseSession frees a slot.
    first.stop()
    fourth = session(quota_gw, "alice", token=ALICE_TOKEN)
    works(fourth)
    works(second)
    # Still at the limit (second, fourth).
    fifth = session(quota_gw, "alice", token=ALICE_TOKEN)
    e = error_of(lambda: fifth.range(3).count())
    assert e.getGrpcStatusCode() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(e)
