#!/usr/bin/env bash
# The Node.js that Spawner runs on (docs/adr/0009-node-runtime.md): the images' Node and the one
# the README's test command and CI run the build, the unit tests and the e2e suite on. The binary
# is the official one, from the npm registry's node-linux-<arch> package (npm checks its
# integrity), cached under ~/.cache/spawner/node.
#
#   bash scripts/node-runtime.sh dir        fetch when missing; print the directory (bin/node, LICENSE)
#   bash scripts/node-runtime.sh version    print the version
set -euo pipefail

NODE_VERSION=24.22.3 # Node.js 24 LTS; images, bundles (target node24) and tests follow this line
CACHE="${SPAWNER_CACHE:-$HOME/.cache/spawner}"

log() { printf '[node-runtime %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

node_arch() {
  case "$(uname -m)" in
    x86_64) echo x64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) die "no Node.js binary package for $(uname -m)" ;;
  esac
}

cmd_dir() {
  local arch dir tmp
  arch=$(node_arch)
  dir="$CACHE/node/node-linux-$arch-$NODE_VERSION"
  if [ ! -x "$dir/bin/node" ]; then
    log "fetching node-linux-$arch@$NODE_VERSION from the npm registry"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" >/dev/null) \
      || die "npm pack node-linux-$arch@$NODE_VERSION failed (is the npm registry reachable?)"
    mkdir -p "$tmp/x" && tar -xzf "$tmp"/node-linux-*.tgz -C "$tmp/x" package/bin/node package/LICENSE
    "$tmp/x/package/bin/node" --version >/dev/null || die "the fetched node does not run on this machine"
    mkdir -p "$(dirname "$dir")" && rm -rf "$dir" && mv "$tmp/x/package" "$dir" && rm -rf "$tmp"
  fi
  echo "$dir"
}

case "${1:-}" in
  dir) cmd_dir ;;
  version) echo "$NODE_VERSION" ;;
  *) die "usage: bash scripts/node-runtime.sh dir|version" ;;
esac
