#!/usr/bin/env bash
# The README's test command: build, static checks, unit tests, then the e2e suite against a real
# control plane (built and started by e2e/run.sh). Reports go to reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p reports
echo "== build"; npm run --silent build
echo "== typecheck"; npm run --silent typecheck
echo "== lint"; npm run --silent lint
echo "== unit tests"
JEST_JUNIT_OUTPUT_NAME=unit.xml npx jest --selectProjects unit --json --outputFile=reports/unit.json "$@"
echo "== e2e tests"
bash e2e/run.sh --json --outputFile=reports/e2e.json
