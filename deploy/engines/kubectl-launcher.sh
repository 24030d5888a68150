#!/usr/bin/env bash
# An example engines `command` launcher (docs/engines.md) that runs each engine as a
# Kubernetes Pod with kubectl. UNTESTED here: no cluster was available; treat it as a
# starting point, not a finished launcher.
#
#   engines:
#     launcher: command
#     command: {argv: [/opt/sparkgate/kubectl-launcher.sh]}
#
# The gateway sets SPARKGATE_ENGINE_KEY (e.g. "user:alice"), SPARKGATE_ENGINE_PORT and
# SPARKGATE_ENGINE_TOKEN. This script creates a Secret with the token and a Pod from the
# template below, waits until the Pod is Ready, prints "<pod-ip>:15002" and then follows the
# Pod until it ends. The gateway stops the engine with SIGTERM to this script's process
# group; the trap deletes the Pod and the Secret.
#
# Settings (environment): ENGINE_NAMESPACE (default: the current context's), ENGINE_IMAGE
# (an image with Spark 4 and its Connect server, default apache/spark:4.0.0),
# ENGINE_DRIVER_MEMORY (1g), ENGINE_SERVICE_ACCOUNT (optional).
set -euo pipefail

: "${SPARKGATE_ENGINE_KEY:?set by the gateway}"
: "${SPARKGATE_ENGINE_TOKEN:?set by the gateway}"
ns_args=()
[ -n "${ENGINE_NAMESPACE:-}" ] && ns_args=(--namespace "$ENGINE_NAMESPACE")
# A DNS-1123 name from the share key, plus randomness so that a restart never collides.
slug="$(printf '%s' "$SPARKGATE_ENGINE_KEY" | tr -c 'a-z0-9' '-' | cut -c1-40 | sed 's/-*$//')"
name="sparkgate-engine-${slug}-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"

cleanup() {
  kubectl "${ns_args[@]}" delete pod "$name" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl "${ns_args[@]}" delete secret "$name" --ignore-not-found >/dev/null 2>&1 || true
}
trap 'cleanup; exit 0' TERM INT
trap cleanup EXIT

kubectl "${ns_args[@]}" create secret generic "$name" --from-literal=token="$SPARKGATE_ENGINE_TOKEN" >/dev/null

kubectl "${ns_args[@]}" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $name
  labels: {app.kubernetes.io/name: sparkgate-engine, app.kubernetes.io/managed-by: sparkgate}
spec:
  restartPolicy: Never
  ${ENGINE_SERVICE_ACCOUNT:+serviceAccountName: $ENGINE_SERVICE_ACCOUNT}
  containers:
    - name: spark
      image: ${ENGINE_IMAGE:-apache/spark:4.0.0}
      env:
        - name: ENGINE_TOKEN
          valueFrom: {secretKeyRef: {name: $name, key: token}}
      command: [/bin/bash, -c]
      args:
        - >-
          exec /opt/spark/bin/spark-submit --master 'local[*]'
          --class org.apache.spark.sql.connect.service.SparkConnectServer
          --conf spark.connect.grpc.binding.address=0.0.0.0
          --conf spark.connect.grpc.binding.port=15002
          --conf spark.connect.authenticate.token="\$ENGINE_TOKEN"
          --conf spark.driver.memory=${ENGINE_DRIVER_MEMORY:-1g}
          spark-internal
      ports: [{containerPort: 15002, name: spark-connect}]
      readinessProbe: {tcpSocket: {port: 15002}, periodSeconds: 2}
YAML

kubectl "${ns_args[@]}" wait --for=condition=Ready "pod/$name" --timeout=10m >/dev/null
ip="$(kubectl "${ns_args[@]}" get pod "$name" -o jsonpath='{.status.podIP}')"
echo "$ip:15002"
# Stay in the foreground while the Pod runs: when it ends, this script exits and the
# gateway treats the engine as crashed.
kubectl "${ns_args[@]}" wait --for=jsonpath='{.status.phase}'=Failed "pod/$name" --timeout=-1s >/dev/null 2>&1 &
w1=$!
kubectl "${ns_args[@]}" wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$name" --timeout=-1s >/dev/null 2>&1 &
w2=$!
wait -n "$w1" "$w2" || true
