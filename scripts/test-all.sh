#!/usr/bin/env bash
# The README's test command: install what the tests need when it is missing (Debian packages,
# schemathesis, the Go-built Kubernetes binaries: scripts/install-test-deps.sh, which stops with the
# commands to run when it cannot), then build, static checks, unit tests, and the e2e suite against
# a real control plane (started by e2e/run.sh). Reports go to reports/.
#
# Everything after the dependencies runs on the Node.js the images ship (scripts/node-runtime.sh,
# fetched once from the npm registry), whatever the machine's Node is (ADR 0009);
# SPAWNER_TEST_NODE=system keeps the machine's.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p reports
step() { printf '== %s [%s]\n' "$*" "$(date +%H:%M:%S)"; }
step "test dependencies"; bash scripts/install-test-deps.sh
if [ "${SPAWNER_TEST_NODE:-runtime}" != system ]; then
  node_dir=$(bash scripts/node-runtime.sh dir)
  export PATH="$node_dir/bin:$PATH"
fi
step "node $(node --version) ($(command -v node)), npm $(npm --version)"
step "build"; npm run --silent build
step "typecheck"; npm run --silent typecheck
step "lint"; npm run --silent lint
step "unit tests"
JEST_JUNIT_OUTPUT_NAME=unit.xml npx jest --selectProjects unit --json --outputFile=reports/unit.json "$@"
step "e2e tests"
bash e2e/run.sh --json --outputFile=reports/e2e.json
step "done"
