#!/usr/bin/env bash
# `npm run e2e`: build if sources changed, make sure the control-plane binaries exist, start the
# local cluster (unless KUBECONFIG names one), run the e2e jest project, and always stop the
# cluster it started. On failure the component and pod logs are copied to reports/e2e-logs/.
#
#   npm run e2e                                  the whole suite
#   npm run e2e -- -t 'node agent'               extra arguments go to jest
#   npm run e2e -- --json --outputFile=F         (as scripts/test-all.sh does)
#   KUBECONFIG=~/.kube/kind npm run e2e          against another cluster; agent-only tests skip
#   SPAWNER_E2E_KEEP_CLUSTER=1 npm run e2e       leave the cluster running afterwards
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STATE="${SPAWNER_E2E_DIR:-/tmp/spawner-e2e}"
export SPAWNER_E2E_DIR="$STATE"

log() { printf '[e2e] %s\n' "$*" >&2; }

# One cluster per machine (one node agent, one pod network): concurrent runs (a benchmark, a second
# terminal) wait for each other instead of colliding.
LOCK="${SPAWNER_E2E_LOCK:-/tmp/spawner-e2e.lock}"
exec 9>"$LOCK"
if ! flock -n 9; then
  log "waiting for another e2e run or benchmark to finish (lock $LOCK)"
  flock 9
fi

# Build when any TypeScript source is newer than the last build this script made.
stamp=dist/.e2e-build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find . -name '*.ts' -newer "$stamp" -not -path './node_modules/*' -not -path './dist/*' -print -quit)" ] \
  || [ package.json -nt "$stamp" ] || [ tsconfig.json -nt "$stamp" ]; then
  log "building (npm run build)"
  mkdir -p dist
  touch dist/.e2e-build-start
  if ! npm run --silent build; then
    # tsc still emits JavaScript on type errors; go on if what the suite runs was produced.
    [ -f dist/e2e/node-agent/main.js ] || { log "build failed"; exit 1; }
    log "warning: the build reported type errors; running the suite with what it emitted"
  fi
  mv dist/.e2e-build-start "$stamp"
fi

BIN=$(bash e2e/scripts/build-binaries.sh | tail -n 1)
export SPAWNER_E2E_BIN="$BIN"

started=0
rc=1
finish() {
  set +e
  if [ "$rc" != 0 ] && [ -d "$STATE" ]; then
    dest="reports/e2e-logs"
    # Only what is copied here is replaced: host-components/ holds the logs of the operator, API
    # and sweeper processes the tests started in this run, which are what a failure is read from.
    rm -rf "$dest/components" "$dest/pods"
    mkdir -p "$dest"
    cp -r "$STATE/logs" "$dest/components" 2>/dev/null
    # Pod logs only (volumes hold tokens and are not copied).
    (cd "$STATE" && find pods -name '*.log' -print0 2>/dev/null | xargs -0 -r cp --parents -t "$ROOT/$dest")
    log "e2e failed (exit $rc); logs copied to $dest/"
  fi
  if [ "$started" = 1 ] && [ "${SPAWNER_E2E_KEEP_CLUSTER:-0}" != 1 ]; then
    bash e2e/cluster.sh down
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

if [ -z "${KUBECONFIG:-}" ]; then
  if bash e2e/cluster.sh status >/dev/null 2>&1; then
    log "reusing the cluster already running in $STATE (left running afterwards)"
  else
    started=1
  fi
  KUBECONFIG=$(bash e2e/cluster.sh up | tail -n 1)
  export KUBECONFIG
else
  log "using the cluster of KUBECONFIG=$KUBECONFIG"
fi

mkdir -p reports
set +e
JEST_JUNIT_OUTPUT_NAME="${JEST_JUNIT_OUTPUT_NAME:-e2e.xml}" npx jest --selectProjects e2e --runInBand "$@"
rc=$?
set -e
