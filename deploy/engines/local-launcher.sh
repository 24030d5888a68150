#!/usr/bin/env bash
# An engines `command` launcher (docs/engines.md) that starts Spark Connect on this
# machine: the gateway runs it with SPARKGATE_ENGINE_KEY, SPARKGATE_ENGINE_PORT and
# SPARKGATE_ENGINE_TOKEN set; it prints "127.0.0.1:<port>" once the server accepts
# connections and then stays in the foreground as long as Spark runs (the gateway stops it
# with SIGTERM to its process group).
#
#   engines:
#     launcher: command
#     command: {argv: [deploy/engines/local-launcher.sh]}
#
# SPARK_HOME (or a spark-submit on PATH) names the Spark to run; ENGINE_MASTER (default
# local[1]) and ENGINE_DRIVER_MEMORY (default 512m) size it.
set -euo pipefail

: "${SPARKGATE_ENGINE_PORT:?set by the gateway}"
: "${SPARKGATE_ENGINE_TOKEN:?set by the gateway}"
submit="${SPARK_HOME:+$SPARK_HOME/bin/}spark-submit"
dir="$(mktemp -d "${TMPDIR:-/tmp}/sparkgate-launcher-XXXXXX")"
props="$dir/engine.properties"
# The token goes to a file only this user can read, never on a command line.
( umask 077
  cat >"$props" <<PROPS
spark.connect.grpc.binding.address=127.0.0.1
spark.connect.grpc.binding.port=$SPARKGATE_ENGINE_PORT
spark.connect.authenticate.token=$SPARKGATE_ENGINE_TOKEN
spark.driver.bindAddress=127.0.0.1
spark.driver.host=127.0.0.1
spark.driver.memory=${ENGINE_DRIVER_MEMORY:-512m}
spark.ui.enabled=false
spark.local.dir=$dir/local
spark.sql.warehouse.dir=$dir/warehouse
PROPS
)
mkdir -p "$dir/conf"
SPARK_CONF_DIR="$dir/conf" SPARK_LOCAL_IP=127.0.0.1 \
  "$submit" --master "${ENGINE_MASTER:-local[1]}" --properties-file "$props" \
  --class org.apache.spark.sql.connect.service.SparkConnectServer spark-internal \
  >"$dir/engine.log" 2>&1 &
spark=$!
trap 'kill -TERM "$spark" 2>/dev/null; wait "$spark"; rm -rf "$dir"' TERM INT EXIT
# Ready: the port accepts a TCP connection.
while ! (exec 3<>"/dev/tcp/127.0.0.1/$SPARKGATE_ENGINE_PORT") 2>/dev/null; do
  if ! kill -0 "$spark" 2>/dev/null; then
    echo "local-launcher: spark-submit exited; log $dir/engine.log" >&2
    tail -n 20 "$dir/engine.log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
rm -f "$props"
echo "127.0.0.1:$SPARKGATE_ENGINE_PORT"
wait "$spark"
