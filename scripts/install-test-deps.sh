#!/usr/bin/env bash
# What the tests need beyond node_modules, checked and installed when missing. `npm test`
# (scripts/test-all.sh) and `.ci/run` both start with it; warm, it only checks (about a second).
#
#   debs      Debian packages: openssl (test PKI), iproute2 + util-linux (pod network and mount
#             namespaces, flock), curl + procps (e2e/cluster.sh), chromium (/usr/bin/chromium, the
#             demo page test), prometheus (promtool for the chart tests, a real Prometheus in e2e),
#             buildah + mmdebstrap (the images, e2e/images.e2e.ts: scripts/images.sh), shellcheck
#             (actionlint runs it on the release workflow's scripts)
#   venv      schemathesis (PyPI, the version pinned below) in a venv at ~/.cache/spawner/venv,
#             for the e2e fuzz suite (python3 and python3-venv join the Debian packages if needed)
#   binaries  kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and helm, built
#             from their Go modules by e2e/scripts/build-binaries.sh (Go >= 1.26; ~10 min on 2 cores
#             the first time, then cached under ~/.cache/spawner); and actionlint, for the release
#             workflow (e2e/images.test.ts; a minute, cached; skipped without Go, not a blocker)
#
#   bash scripts/install-test-deps.sh [--check] [debs] [venv] [binaries]   (default: all three)
#
# Everything missing is planned first. If something cannot be installed here (Debian packages
# without root, sudo or apt-get; the binaries without Go >= 1.26) it stops before installing
# anything and prints the commands to run. --check (or SPAWNER_TEST_INSTALL=0) only reports
# what is present, and exits 1 when something is missing.
#
#   SPAWNER_TEST_DEBS   the Debian packages to check (default below; for tests of this script)
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_DEBS="openssl iproute2 util-linux curl procps chromium prometheus buildah mmdebstrap shellcheck"
read -r -a DEBS <<<"${SPAWNER_TEST_DEBS-$DEFAULT_DEBS}"
SCHEMATHESIS_VERSION=4.32.5 # e2e/fuzz.e2e.ts and docs/reliability.md name this version too
VENV="$HOME/.cache/spawner/venv" # where e2e/fuzz.e2e.ts looks (unless SPAWNER_SCHEMATHESIS is set)
GO_MIN_MINOR=26                  # Go 1.26: what Kubernetes v1.36's go.mod asks (GOTOOLCHAIN=local)
ACTIONLINT_VERSION=v1.7.12       # e2e/images.test.ts finds it at the same path
ACTIONLINT="${SPAWNER_CACHE:-$HOME/.cache/spawner}/bin/actionlint-$ACTIONLINT_VERSION/actionlint"

started=$(date +%s)
log() { printf '[test-deps %s +%ss] %s\n' "$(date +%H:%M:%S)" "$(($(date +%s) - started))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
ok() { [ "$check" = 0 ] || log "ok: $*"; } # what is present is listed with --check only

check=0
[ "${SPAWNER_TEST_INSTALL:-1}" = 0 ] && check=1
parts=()
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    debs | venv | binaries) parts+=("$a") ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument '$a' (try --help)" ;;
  esac
done
[ "${#parts[@]}" -gt 0 ] || parts=(debs venv binaries)
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }

# ---- what is there -------------------------------------------------------------------------------
missing=() # human-readable, for the report
need_debs=()
blockers=() # what this script cannot do here, each with the command that does it

deb_installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }
add_deb() { [[ " ${need_debs[*]} " == *" $1 "* ]] || need_debs+=("$1"); }

if want debs; then
  for p in "${DEBS[@]}"; do
    if command -v dpkg-query >/dev/null && deb_installed "$p"; then
      ok "Debian package $p"
    else
      missing+=("Debian package $p"); add_deb "$p"
    fi
  done
fi

# The venv needs a python3 with ensurepip, which Debian's python3 has only with python3-venv.
PYTHON=python3
python_venv_ok() { "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; }
schemathesis_ok() { "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; }
if want venv; then
  if schemathesis_ok; then
    ok "schemathesis $SCHEMATHESIS_VERSION in $VENV"
  else
    missing+=("schemathesis $SCHEMATHESIS_VERSION in $VENV")
    if ! python_venv_ok; then
      command -v python3 >/dev/null || add_deb python3
      add_deb python3-venv
    fi
  fi
fi

# Debian packages: as root, or through sudo (without a password when there is no terminal).
SUDO=()
debs_blocked=0
apt_cmd="apt-get update && apt-get install -y --no-install-recommends ${need_debs[*]}"
if [ "${#need_debs[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    blockers+=("Not a Debian machine (no apt-get): install the equivalents of: ${need_debs[*]}")
    debs_blocked=1
  elif [ "$(id -u)" -eq 0 ]; then
    :
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  elif command -v sudo >/dev/null && [ -t 0 ]; then
    SUDO=(sudo) # asks for the password
  else
    blockers+=("Debian packages ${need_debs[*]}, which need root (no sudo here). As root, run:
      $apt_cmd")
    debs_blocked=1
  fi
fi

go_ok() {
  local v
  v=$(go env GOVERSION 2>/dev/null) || return 1
  [[ "$v" =~ ^go([0-9]+)\.([0-9]+) ]] || return 1
  [ "${BASH_REMATCH[1]}" -gt 1 ] || [ "${BASH_REMATCH[2]}" -ge "$GO_MIN_MINOR" ]
}
if want binaries; then
  if bin_dir=$(bash e2e/scripts/build-binaries.sh --check 2>/dev/null | tail -n 1); then
    ok "Kubernetes binaries in $bin_dir"
  else
    missing+=("Kubernetes binaries (e2e/scripts/build-binaries.sh)")
    if ! go_ok; then
      have="none on PATH"; command -v go >/dev/null && have="$(go env GOVERSION 2>/dev/null || echo '?') at $(command -v go)"
      blockers+=("Go >= 1.$GO_MIN_MINOR, to build the Kubernetes binaries (found: $have; Debian's golang-go is older).
    Install it (https://go.dev/doc/install) with its bin/ on PATH; the build is then:
      bash e2e/scripts/build-binaries.sh")
    fi
  fi
fi

build_actionlint=0
if want binaries; then
  if [ -x "$ACTIONLINT" ]; then
    ok "actionlint in $ACTIONLINT"
  elif go_ok; then
    missing+=("actionlint $ACTIONLINT_VERSION"); build_actionlint=1
  else
    log "note: actionlint is not built (no Go >= 1.$GO_MIN_MINOR), so the release workflow's check is skipped"
  fi
fi

if [ "${#missing[@]}" -eq 0 ]; then
  log "everything the tests need is present"
  exit 0
fi
if [ "$check" = 1 ]; then
  for m in "${missing[@]}"; do log "missing: $m"; done
  if [ "${#need_debs[@]}" -gt 0 ] && [ "$debs_blocked" = 0 ]; then
    log "to install the Debian packages${SUDO[*]:+ (via ${SUDO[*]})}: $apt_cmd"
  fi
  for b in "${blockers[@]}"; do log "cannot install here: $b"; done
  [ "${#blockers[@]}" -gt 0 ] || log "'bash scripts/install-test-deps.sh' (which npm test runs) installs what is missing"
  exit 1
fi
if [ "${#blockers[@]}" -gt 0 ]; then
  for m in "${missing[@]}"; do log "missing: $m"; done
  for b in "${blockers[@]}"; do log "cannot install: $b"; done
  [ "${#blockers[@]}" -lt "${#missing[@]}" ] && log "the rest of what is missing, this script installs itself on its next run"
  die "nothing was installed; run the commands above, then the tests again"
fi

# ---- install ---------------------------------------------------------------------------------
if [ "${#need_debs[@]}" -gt 0 ]; then
  apt_log=$(mktemp /tmp/spawner-apt.XXXXXX.log)
  log "installing Debian packages: ${need_debs[*]} (apt-get${SUDO[*]:+ via ${SUDO[*]}}; log: $apt_log)"
  export DEBIAN_FRONTEND=noninteractive
  if ! { "${SUDO[@]}" apt-get update -q && "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need_debs[@]}"; } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    die "apt-get failed (whole log: $apt_log); to retry by hand: $apt_cmd"
  fi
  for p in "${need_debs[@]}"; do deb_installed "$p" || die "$p is still not installed after apt-get (log: $apt_log)"; done
  rm -f "$apt_log"
  log "installed: ${need_debs[*]}"
fi

if want venv && ! schemathesis_ok; then
  # Another python3 (pyenv, …) may come first on PATH and lack ensurepip; Debian's has it now.
  python_venv_ok || { PYTHON=/usr/bin/python3; python_venv_ok; } \
    || die "python3 cannot make venvs (no ensurepip): install python3-venv for $(command -v python3)"
  log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $VENV ($("$PYTHON" --version))"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "pip could not install schemathesis==$SCHEMATHESIS_VERSION into $VENV"
  schemathesis_ok || die "$VENV/bin/schemathesis --version does not report $SCHEMATHESIS_VERSION"
  log "installed: $("$VENV/bin/schemathesis" --version)"
fi

if want binaries && ! bash e2e/scripts/build-binaries.sh --check >/dev/null 2>&1; then
  log "building the Kubernetes binaries from their Go modules with $(go env GOVERSION)" \
    "(first time: about 10 min on 2 cores, then cached; progress below)"
  bin_dir=$(bash e2e/scripts/build-binaries.sh | tail -n 1)
  log "built: $bin_dir"
fi
if [ "$build_actionlint" = 1 ]; then
  log "building actionlint $ACTIONLINT_VERSION from its Go module (about a minute)"
  GOBIN="$(dirname "$ACTIONLINT")" GOTOOLCHAIN=local go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
    || die "go install github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION failed"
  log "built: $ACTIONLINT"
fi
log "done: everything the tests need is present"
