#!/usr/bin/env bash
# Offline checks of deploy/: the Helm chart, its values examples, the sidecar manifest, the
# Grafana dashboard and the Dockerfile. Needs Go and the Go module proxy (nothing else
# from the network); the last line is always `N passed, N failed`.
#
#   tests/deploy/run.sh
#
# 1. helm v3.22.0 into <repo>/.tools/bin (gitignored) with `go install`, skipped when the
#    binary there already reports that version.
# 2. The validator (tests/deploy/validate, its own go.mod) into .tools/bin, skipped when
#    its sources and the Go version are unchanged.
# 3. For every deploy/helm/examples/*.yaml: `helm lint --strict`, `helm template`, strict
#    typed decoding of every rendered object plus sparkgate's own checks, and
#    `sparkgate --check-config` on the rendered gateway configuration.
# 4. The same for deploy/k8s/sidecar-job.yaml, the dashboard check, the Dockerfile check,
#    and the Dockerfile's build stage run on this host (tests/deploy/image_build.py into
#    build-image/, the same release build the benchmark uses).
# 5. Negative cases: values and manifests that must be refused, so that a validator that
#    accepts everything fails here.
#
# Environment: SPARKGATE_BIN (default <repo>/build/gateway/sparkgate). When that binary is
# missing, only the --check-config steps are skipped, with a notice.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

HELM_VERSION=v3.22.0
# helm's own release build stamps these (Makefile LDFLAGS): the version, and the Kubernetes
# version that templates and lint assume by default (from the client-go it is built with:
# v0.37 for helm v3.22.0, so Kubernetes 1.37). A bare `go install` would report "v3.22"
# and assume Kubernetes 1.20.
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  HELM_LDFLAGS+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=37"
done

tools="$repo/.tools/bin"
helm="$tools/helm"
validator="$tools/sparkgate-deploy-validate"
chart="deploy/helm/sparkgate"
sidecar="deploy/k8s/sidecar-job.yaml"
dashboard="deploy/grafana/sparkgate.json"
dockerfile="deploy/docker/Dockerfile"
sparkgate="${SPARKGATE_BIN:-$repo/build/gateway/sparkgate}"

# Go: modules from the module proxy only, never a toolchain download.
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local
export CGO_ENABLED=0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$tools"

passed=0
failed=0
started=$SECONDS

pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$1"; }
fail() {
  # fail NAME [LOG]
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
  if [ -n "${2:-}" ] && [ -s "$2" ]; then sed 's/^/      /' "$2" | tail -n 40; fi
}

check() {
  # check NAME CMD... — passes when CMD exits 0.
  local name="$1"; shift
  local log="$work/log.$((passed + failed))" t0=$SECONDS
  if "$@" >"$log" 2>&1; then
    pass "$name ($((SECONDS - t0))s)"
  else
    fail "$name" "$log"
  fi
}

expect_fail() {
  # expect_fail NAME TEXT CMD... — passes when CMD fails and its output contains TEXT.
  local name="$1" text="$2"; shift 2
  local log="$work/log.$((passed + failed))"
  if "$@" >"$log" 2>&1; then
    echo "expected a failure, but the command succeeded" >>"$log"
    fail "$name" "$log"
  elif ! grep -qF -- "$text" "$log"; then
    echo "expected the output to contain: $text" >>"$log"
    fail "$name" "$log"
  else
    pass "$name (refused: $(grep -F -m1 -- "$text" "$log" | sed 's/^[[:space:]-]*//' | cut -c1-150))"
  fi
}

# ---------------------------------------------------------------------------------------
# 1-2. Tools
# ---------------------------------------------------------------------------------------
install_helm() {
  if [ -x "$helm" ] && [ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    echo "helm $HELM_VERSION already in .tools/bin"
    return 0
  fi
  command -v go >/dev/null || { echo "go is not on PATH"; return 1; }
  echo "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION ($(go version))"
  GOBIN="$tools" go install -trimpath -ldflags "$HELM_LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || return 1
  [ "$("$helm" version --template '{{.Version}}')" = "$HELM_VERSION" ]
}

build_validator() {
  command -v go >/dev/null || { echo "go is not on PATH"; return 1; }
  local stamp="$repo/.tools/sparkgate-deploy-validate.stamp" want
  want="$( (go version; cd tests/deploy/validate && cat go.mod go.sum ./*.go) | sha256sum | cut -d' ' -f1)"
  if [ -x "$validator" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "validator up to date"
    return 0
  fi
  rm -f "$stamp"
  (cd tests/deploy/validate && go build -trimpath -o "$validator" .) || return 1
  echo "$want" >"$stamp"
}

t0=$SECONDS
check "helm $HELM_VERSION in .tools/bin" install_helm
t_helm=$((SECONDS - t0))
t0=$SECONDS
check "validator built (tests/deploy/validate)" build_validator
t_validator=$((SECONDS - t0))
have_helm=0; [ -x "$helm" ] && "$helm" version >/dev/null 2>&1 && have_helm=1
have_validator=0; [ -x "$validator" ] && have_validator=1
have_sparkgate=0; [ -x "$sparkgate" ] && have_sparkgate=1
if [ "$have_sparkgate" -eq 0 ]; then
  echo "NOTICE: $sparkgate is missing (build it with meson/ninja, or set SPARKGATE_BIN):"
  echo "        the 'sparkgate --check-config' steps are skipped; every other check runs."
fi

needs() {
  # needs NAME TOOL... — fails NAME (and returns 1) when a tool is missing.
  local name="$1"; shift
  for t in "$@"; do
    case "$t" in
      helm) [ "$have_helm" -eq 1 ] || { fail "$name (no helm)"; return 1; } ;;
      validator) [ "$have_validator" -eq 1 ] || { fail "$name (no validator)"; return 1; } ;;
    esac
  done
}

render() {
  # render OUT ARGS... — helm template of the chart into OUT.
  local out="$1"; shift
  "$helm" template sparkgate "$chart" --namespace sparkgate "$@" >"$out"
}

# ---------------------------------------------------------------------------------------
# 3. The chart, with each values example
# ---------------------------------------------------------------------------------------
if needs "helm lint --strict (chart defaults)" helm; then
  check "helm lint --strict (chart defaults)" "$helm" lint --strict "$chart"
fi
examples=(deploy/helm/examples/*.yaml)
for ex in "${examples[@]}"; do
  name="$(basename "$ex" .yaml)"
  out="$work/$name.rendered.yaml"
  needs "helm lint --strict $ex" helm && check "helm lint --strict -f $ex" "$helm" lint --strict "$chart" -f "$ex"
  needs "helm template $ex" helm && check "helm template -f $ex" render "$out" -f "$ex"
  if [ -s "$out" ] && needs "validate $ex" validator; then
    check "validate $name (strict decoding, probes, grace period, references)" "$validator" "$out"
    if [ "$have_sparkgate" -eq 1 ]; then
      check "sparkgate --check-config on $name's ConfigMap" "$validator" -check-config "$sparkgate" "$out"
    fi
  elif [ ! -s "$out" ]; then
    fail "validate $ex (nothing rendered)"
  fi
done

# ---------------------------------------------------------------------------------------
# 4. Sidecar manifest, dashboard, Dockerfile
# ---------------------------------------------------------------------------------------
if needs "validate $sidecar" validator; then
  check "validate $sidecar" "$validator" "$sidecar"
  if [ "$have_sparkgate" -eq 1 ]; then
    check "sparkgate --check-config on the sidecar's ConfigMap" "$validator" -check-config "$sparkgate" "$sidecar"
  fi
fi

check_dashboard() {
  python3 -m json.tool "$dashboard" >/dev/null && python3 tests/deploy/check_dashboard.py "$dashboard"
}
check "dashboard $dashboard (JSON, datasource variable, metric names)" check_dashboard

check_dockerfile() {
  # check_dockerfile FILE — the runtime stage's promises, and its package list against apt
  # and the built binary.
  local dockerfile="$1"
  grep -qx 'ENTRYPOINT \["sparkgate", "--config", "/etc/sparkgate/sparkgate.yaml"\]' "$dockerfile" \
    || { echo "ENTRYPOINT must be sparkgate --config /etc/sparkgate/sparkgate.yaml (the chart mounts it there)"; return 1; }
  grep -qx 'USER 10001:10001' "$dockerfile" || { echo "the runtime stage must run as USER 10001:10001"; return 1; }
  grep -qx 'EXPOSE 15002 9901' "$dockerfile" || { echo "EXPOSE 15002 9901 expected"; return 1; }
  grep -q '^FROM debian:${DEBIAN_RELEASE}-slim AS runtime' "$dockerfile" || { echo "no bookworm-slim runtime stage"; return 1; }
  local runtime_pkgs
  runtime_pkgs="$(awk '/^FROM .* AS runtime/{r=1} r && /apt-get install/{i=1; next} i && /&&/{i=0} i' "$dockerfile" \
    | tr -d '\\' | tr -s ' \n' '\n' | grep -v '^$' || true)"
  [ -n "$runtime_pkgs" ] || { echo "cannot read the runtime stage's package list"; return 1; }
  echo "runtime packages: $(echo $runtime_pkgs)"
  if [ -n "$(apt-cache policy libc6 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)')" ]; then
    local p found
    found="$(apt-cache show --no-all-versions $runtime_pkgs 2>/dev/null | sed -n 's/^Package: //p')"
    for p in $runtime_pkgs; do
      grep -qx -- "$p" <<<"$found" || { echo "apt-cache show $p: no such Debian package"; return 1; }
    done
    echo "every runtime package exists in apt"
  else
    echo "NOTICE: no apt package lists here (apt-get update); package names not looked up"
  fi
  if [ "$have_sparkgate" -eq 1 ]; then
    local lib pkg owners libs patterns=()
    libs="$(ldd "$sparkgate" | awk '$3 ~ /^\// {print $3}')"
    # */<arch dir>/<file>: the same file under /lib and /usr/lib (merged /usr), not /lib32.
    # One dpkg -S for all of them: each call reads every package's file list.
    for lib in $libs; do patterns+=("*/$(basename "$(dirname "$lib")")/$(basename "$lib")"); done
    owners="$(dpkg -S "${patterns[@]}" 2>/dev/null || true)"
    for lib in $libs; do
      pkg="$(grep -F "/$(basename "$(dirname "$lib")")/$(basename "$lib")" <<<"$owners" | head -n1 | cut -d: -f1)"
      case "$pkg" in
        libc6|libstdc++6|libgcc-s1) continue ;;  # in the base image
        "") echo "$lib: not from a Debian package"; return 1 ;;
      esac
      grep -qx -- "$pkg" <<<"$runtime_pkgs" || { echo "$sparkgate links $lib from $pkg, which the runtime stage does not install"; return 1; }
    done
    echo "every library $sparkgate links is installed by the runtime stage"
  fi
}
check "Dockerfile (entrypoint, user, ports, runtime packages)" check_dockerfile "$dockerfile"

# The image's build stage on this host (no Docker daemon here): its COPY lines (minus
# .dockerignore), then its RUN commands as written: meson setup --buildtype=release (so
# -Werror at -O3), ninja, strip, --version, the runtime-packages list. Shared with the
# benchmark's build (tests/bench/run.sh), incremental after the first run.
image_dir="$repo/build-image"
t0=$SECONDS
check "Dockerfile build stage on the host (tests/deploy/image_build.py)" \
  python3 tests/deploy/image_build.py --dockerfile "$dockerfile" --dir "$image_dir"
t_image=$((SECONDS - t0))
check_runtime_packages() {
  # Every package the build stage found the release binary to need (runtime-packages.txt)
  # is installed by the runtime stage, or is in the base image.
  local list="$image_dir/src/build/runtime-packages.txt" runtime_pkgs p
  [ -s "$list" ] || { echo "$list is missing or empty"; return 1; }
  runtime_pkgs="$(awk '/^FROM .* AS runtime/{r=1} r && /apt-get install/{i=1; next} i && /&&/{i=0} i' "$dockerfile" \
    | tr -d '\\' | tr -s ' \n' '\n' | grep -v '^$' || true)"
  while IFS= read -r p; do
    case "$p" in libc6|libstdc++6|libgcc-s1) continue ;; esac
    grep -qx -- "$p" <<<"$runtime_pkgs" || { echo "the image's binary needs $p, which the runtime stage does not install"; return 1; }
  done <"$list"
  echo "runtime packages of the image's binary: $(tr '\n' ' ' <"$list")"
}
check "the runtime stage installs every package the image's binary links" check_runtime_packages

# ---------------------------------------------------------------------------------------
# 5. Negative cases: each must be refused
# ---------------------------------------------------------------------------------------
central="deploy/helm/examples/central.yaml"
minimal="deploy/helm/examples/minimal.yaml"
if needs "negative cases" helm validator; then
  expect_fail "helm refuses terminationGracePeriodSeconds <= drain + preStop" \
    "terminationGracePeriodSeconds (30) must be longer than gateway.drainTimeoutSeconds (60) + preStopSleepSeconds (10)" \
    render "$work/neg-grace.yaml" -f "$central" --set terminationGracePeriodSeconds=30
  expect_fail "helm refuses a client token that is not a sha256 hash" \
    'secrets.clientTokens[0].sha256 must be "sha256:"' \
    render "$work/neg-token.yaml" -f "$minimal" --set 'secrets.clientTokens[0].sha256=s3cret' --set 'secrets.clientTokens[0].user=alice'

  render "$work/minimal.yaml" -f "$minimal"
  sed 's/^      terminationGracePeriodSeconds: 45$/      terminationGracePeriodSeconds: 20/' "$work/minimal.yaml" >"$work/neg-grace-manifest.yaml"
  expect_fail "validator refuses a manifest whose grace period is too short" \
    "terminationGracePeriodSeconds (20) must be longer than drain.timeout (30s) + the preStop delay (5s)" \
    "$validator" "$work/neg-grace-manifest.yaml"

  cat >"$work/neg-unknown-field.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
spec:
  replica: 2
  selector: {matchLabels: {app: typo}}
  template:
    metadata: {labels: {app: typo}}
    spec:
      containers:
        - name: web
          image: nginx
          imagePullPolicyy: Always
EOF
  expect_fail "validator rejects unknown fields" 'unknown field "spec.replica"' "$validator" "$work/neg-unknown-field.yaml"
  expect_fail "validator rejects unknown nested fields" 'unknown field "spec.template.spec.containers[0].imagePullPolicyy"' \
    "$validator" "$work/neg-unknown-field.yaml"

  render "$work/neg-loopback.yaml" -f "$minimal" --set gateway.admin.bindAddress=127.0.0.1
  expect_fail "validator refuses probes of a loopback admin listener" \
    "admin.address 127.0.0.1:9901 is loopback, and the kubelet probes the pod IP" "$validator" "$work/neg-loopback.yaml"

  sed '/livenessProbe:/,/path:/ s#path: /healthz#path: /readyz#' "$work/minimal.yaml" >"$work/neg-liveness.yaml"
  expect_fail "validator refuses a liveness probe on /readyz" \
    'livenessProbe probes path "/readyz"; it must be /healthz' "$validator" "$work/neg-liveness.yaml"

  render "$work/neg-env.yaml" -f "$central" --set-json 'secrets.envFromSecrets=[]'
  expect_fail "validator refuses a token_env that the pod does not set" \
    "clusters[0].credentials.token_env names environment variable SPARK_ETL_TOKEN, which the container does not set" \
    "$validator" "$work/neg-env.yaml"

  sed 's/^          restartPolicy: Always$//' "$sidecar" >"$work/neg-sidecar.yaml"
  expect_fail "validator refuses a sidecar that is not a native sidecar" \
    "must be a native sidecar (restartPolicy: Always)" "$validator" "$work/neg-sidecar.yaml"

  if [ -n "$(apt-cache policy libc6 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)')" ]; then
    sed 's/ libfmt9 / libfmt99 /' "$dockerfile" >"$work/Dockerfile.misspelt"
    expect_fail "Dockerfile check refuses a runtime package that does not exist" \
      "apt-cache show libfmt99: no such Debian package" check_dockerfile "$work/Dockerfile.misspelt"
  fi
  # A build stage that does not copy a file the build reads (meson_options.txt) must fail
  # as the image build would: in meson setup.
  sed 's/^COPY meson.build meson_options.txt \.\/$/COPY meson.build .\//' "$dockerfile" >"$work/Dockerfile.nocopy"
  expect_fail "the build stage check fails when the stage does not COPY meson_options.txt" \
    "RUN failed" python3 tests/deploy/image_build.py --dockerfile "$work/Dockerfile.nocopy" --dir "$work/image-nocopy"
  if [ "$have_sparkgate" -eq 1 ]; then
    sed 's/ libfmt9 / /' "$dockerfile" >"$work/Dockerfile.missing"
    expect_fail "Dockerfile check refuses a runtime stage without a library the binary links" \
      "from libfmt9, which the runtime stage does not install" check_dockerfile "$work/Dockerfile.missing"
    render "$work/neg-loglevel.yaml" -f "$minimal" --set gateway.logLevel=loud
    expect_fail "sparkgate --check-config refuses a bad log level in the rendered ConfigMap" \
      "log.level 'loud' is not one of" "$validator" -check-config "$sparkgate" "$work/neg-loglevel.yaml"
  fi
fi

echo
echo "deploy checks took $((SECONDS - started))s (helm install ${t_helm}s, validator build ${t_validator}s, image build stage ${t_image}s)"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
