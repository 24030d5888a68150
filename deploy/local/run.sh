#!/usr/bin/env bash
# Runs sparkgate on this machine in front of a local Spark Connect server.
#
#   deploy/local/run.sh [--no-install] [--engines]
#
# With --engines there is no separate Spark server: the gateway runs config/engines.yaml
# and starts a Spark Connect server per user itself (docs/engines.md), with the pyspark
# of .venv/server as SPARK_HOME.
#
# 1. Installs the dependencies and builds (deploy/install-deps.sh), unless --no-install.
# 2. Starts a Spark Connect server (PyPI pyspark in .venv/server) on 127.0.0.1:15002;
#    its log is deploy/local/.state/spark.log.
# 3. Starts build/gateway/sparkgate with config/local.yaml (listener 127.0.0.1:15001,
#    admin 127.0.0.1:9901). Its JSON access log (stdout, one line per RPC) goes to
#    deploy/local/.state/access.log; its text log (stderr) to deploy/local/.state/gateway.log,
#    and of that only warnings and errors to this terminal, which keeps the banner visible.
# 4. Runs until Ctrl-C or SIGTERM (or until either process dies), then stops both,
#    including every process of the Spark server's process tree.
# Works without a terminal too (e.g. `deploy/local/run.sh </dev/null &`; stop it with kill).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state="$repo/deploy/local/.state"
config="$repo/config/local.yaml"
gateway_bin="$repo/build/gateway/sparkgate"
server_venv="$repo/.venv/server"
client_venv="$repo/.venv/client"

# These must agree with config/local.yaml.
spark_port=15002
gateway_port=15001
admin_port=9901
spark_start_timeout_s=300

install=1
engines=0
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --engines) engines=1; config="$repo/config/engines.yaml" ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[local] %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "$install" -eq 1 ]; then
  bash "$repo/deploy/install-deps.sh"
fi
[ -x "$gateway_bin" ] || { log "$gateway_bin is missing; build it (deploy/install-deps.sh)"; exit 1; }
[ -x "$server_venv/bin/spark-submit" ] || { log "$server_venv has no spark-submit; run deploy/install-deps.sh"; exit 1; }

for p in "$spark_port" "$gateway_port" "$admin_port"; do
  if port_open "$p"; then
    log "127.0.0.1:$p is already in use; stop whatever listens there (ss -ltnp 'sport = :$p')"
    exit 1
  fi
done

mkdir -p "$state/conf" "$state/local"

spark_pid=""
gateway_pid=""
cleaned=0
cleanup() {
  [ "$cleaned" -eq 0 ] || return 0
  cleaned=1
  trap - INT TERM
  if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
    log "stopping sparkgate (pid $gateway_pid)"
    kill -TERM "$gateway_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gateway_pid" 2>/dev/null || true
  fi
  if [ -n "$spark_pid" ]; then
    # The server runs in its own process group (setsid); its Python workers are in it too.
    log "stopping the Spark Connect server (process group $spark_pid)"
    kill -TERM -- "-$spark_pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 -- "-$spark_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$spark_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$engines" -eq 1 ]; then
  # The gateway starts the engines: SPARK_HOME is the pyspark package of the server venv.
  SPARK_HOME="$("$server_venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
  export SPARK_HOME PYSPARK_PYTHON="$server_venv/bin/python"
  unset PYSPARK_DRIVER_PYTHON
  log "engines on demand: the gateway starts Spark itself (SPARK_HOME=$SPARK_HOME)"
else
log "starting the Spark Connect server on 127.0.0.1:$spark_port (log: $state/spark.log)"
# A non-interactive shell does not make background jobs group leaders, so setsid runs the
# server in place as the leader of a new process group whose id is $!.
(
  cd "$state"
  unset SPARK_HOME PYSPARK_DRIVER_PYTHON
  export PYSPARK_PYTHON="$server_venv/bin/python" SPARK_CONF_DIR="$state/conf" \
         SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_DIRS="$state/local"
  exec setsid "$server_venv/bin/spark-submit" --master 'local[*]' \
    --class org.apache.spark.sql.connect.service.SparkConnectServer \
    --name "sparkgate local Spark Connect server" \
    --conf spark.connect.grpc.binding.address=127.0.0.1 \
    --conf spark.connect.grpc.binding.port="$spark_port" \
    --conf spark.driver.bindAddress=127.0.0.1 \
    --conf spark.driver.host=127.0.0.1 \
    --conf spark.ui.enabled=false \
    --conf spark.local.dir="$state/local" \
    --conf spark.sql.warehouse.dir="$state/warehouse"
) </dev/null >"$state/spark.log" 2>&1 &
spark_pid=$!
echo "$spark_pid" > "$state/spark.pid"

deadline=$((SECONDS + spark_start_timeout_s))
until port_open "$spark_port"; do
  if ! kill -0 "$spark_pid" 2>/dev/null; then
    log "the Spark Connect server exited; last lines of $state/spark.log:"
    tail -n 40 "$state/spark.log" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "the Spark Connect server did not listen on $spark_port within ${spark_start_timeout_s}s; see $state/spark.log"
    exit 1
  fi
  sleep 1
done
log "Spark Connect server is up on 127.0.0.1:$spark_port"
fi

log "starting sparkgate on 127.0.0.1:$gateway_port (admin 127.0.0.1:$admin_port, log: $state/gateway.log, access log: $state/access.log)"
# The access log straight to its file; the text log into gateway.log, and its warnings and
# errors (main.cc's pattern: "TIME LEVEL message") to the terminal too. The filter ignores
# Ctrl-C so that the gateway's shutdown lines still reach the log.
"$gateway_bin" --config "$config" </dev/null >>"$state/access.log" \
  2> >(trap '' INT; tee -a "$state/gateway.log" | grep --line-buffered -E '^[^ ]+ (warning|error|critical) ' >&2) &
gateway_pid=$!
for _ in $(seq 1 100); do
  port_open "$gateway_port" && break
  if ! kill -0 "$gateway_pid" 2>/dev/null; then
    log "sparkgate exited; see $state/gateway.log"
    exit 1
  fi
  sleep 0.1
done
port_open "$gateway_port" || { log "sparkgate does not listen on $gateway_port; see $state/gateway.log"; exit 1; }

# One query through the gateway proves the whole path.
if [ -x "$client_venv/bin/python" ]; then
  # The user is named: PySpark sends an empty user_id where $USER is unset, and an engines
  # cluster with share: user refuses a session without a user.
  if smoke="$(cd "$state" && "$client_venv/bin/python" - "$gateway_port" "${USER:-sparkgate}" 2>&1 <<'EOF'
import sys
from pyspark.sql import SparkSession
s = SparkSession.builder.remote(f"sc://localhost:{sys.argv[1]}/;user_id={sys.argv[2]}").create()
try:
    print(s.range(10).selectExpr("sum(id) AS s").collect()[0].s)
finally:
    s.stop()
EOF
)" && [ "$(printf '%s' "$smoke" | tail -n1)" = "45" ]; then
    log "smoke query through sparkgate: OK"
  else
    log "WARNING: smoke query through sparkgate failed:"
    printf '%s\n' "$smoke" | tail -n 20 >&2
  fi
fi

cat >&2 <<EOF

  sparkgate is running: sc://localhost:$gateway_port  ->  $([ "$engines" -eq 1 ] && echo "one Spark engine per user (GET http://127.0.0.1:$admin_port/v1/engines)" || echo "Spark Connect 127.0.0.1:$spark_port")

  PySpark shell:
    . $server_venv/bin/activate && pyspark --remote sc://localhost:$gateway_port

  Python:
    $client_venv/bin/python
    >>> from pyspark.sql import SparkSession
    >>> spark = SparkSession.builder.remote("sc://localhost:$gateway_port").getOrCreate()
    >>> spark.range(5).show()

  Health: http://127.0.0.1:$admin_port/healthz  /readyz
  Admin:  http://127.0.0.1:$admin_port/metrics  /v1/sessions  /v1/backends  /v1/config
  Access log (one JSON line per RPC): $state/access.log
  Logs: $state/gateway.log (warnings and errors also here), $state/spark.log
  Stop: Ctrl-C (or kill $$)

EOF

# Runs until a signal arrives (the traps exit, and the EXIT trap stops both) or one of
# the two processes dies.
set +e
if [ "$engines" -eq 1 ]; then
  wait "$gateway_pid"
  log "sparkgate exited ($?); see $state/gateway.log"
  exit 1
fi
wait -n "$spark_pid" "$gateway_pid"
rc=$?
if ! kill -0 "$spark_pid" 2>/dev/null; then
  log "the Spark Connect server exited ($rc); see $state/spark.log"
else
  log "sparkgate exited ($rc); see $state/gateway.log"
fi
exit 1
