#!/usr/bin/env bash
# Builds Spawner's images (operator, api, sweeper, sidecar; demo-backend, for the helm test) with buildah from the one
# Dockerfile, on this machine, cached by content. Why bundles and this base: docs/adr/0008-images.md.
#
#   bash scripts/images.sh build [component...]   bundle, base, then every image not built yet
#   bash scripts/images.sh base                    only the base image (prints its reference)
#   bash scripts/images.sh bundle [component...]   only the bundles (dist/images/<component>/)
#   bash scripts/images.sh push REGISTRY [TAG]     push the built images as REGISTRY/spawner-<component>:TAG
#                                                   (TAG: the chart's appVersion; this machine's architecture)
#   bash scripts/images.sh list                    the built images (dist/images/images.json)
#
# The base: the public Node.js image (Dockerfile's default BASE) cannot be pulled here, so one is
# made from Debian packages: mmdebstrap unpacks libc6, libgcc-s1, libstdc++6, tzdata and friends
# (no shell, no package manager), and Node.js comes from the npm registry's node-linux-<arch>
# package, the official binary. SPAWNER_IMAGE_BASE=REF uses an image you have instead (e.g.
# docker.io/library/node:24-bookworm-slim where that registry is reachable).
#
# Cache: images live in buildah storage under ~/.cache/spawner/images/storage, tagged
# localhost/spawner-<component>:<key>, the key a hash of the base image, the Dockerfile and the
# bundle's files; an image whose key is present is not built again, and older images of what was
# built are removed. The base is keyed by its recipe (Debian suite, packages, Node.js version) and
# the week. dist/images/images.json lists what `build` produced: reference, key, whether it came
# from the cache, build seconds and size.
#
# Needs root (or a user buildah supports), buildah and mmdebstrap (Debian packages; npm test's
# scripts/install-test-deps.sh installs them), node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NODE_VERSION=$(bash scripts/node-runtime.sh version)
SUITE=bookworm
MIRROR=${SPAWNER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SPAWNER_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What node needs (libc6, libgcc-s1, libstdc++6), time zones, /etc/services and protocols, the
# usual directories and the root and nobody entries' source; no shell, no package manager.
BASE_DEBS="base-files,base-passwd,libc6,libgcc-s1,libstdc++6,netbase,tzdata"
BASE_RECIPE_VERSION=1 # bump when the base recipe below changes in a way the variables above miss
# The base takes Debian's security and point updates; its key names the ISO week, so it is made
# again (about 20 s) at most once a week and images never run on libraries older than that.
BASE_WEEK=${SPAWNER_IMAGE_BASE_WEEK:-$(date -u +%G-W%V)}
COMPONENTS=(operator api sweeper sidecar demo-backend)

CACHE="${SPAWNER_CACHE:-$HOME/.cache/spawner}"
STORE="$CACHE/images"
OUT="$ROOT/dist/images"
BUILDAH=(buildah --root "$STORE/storage" --runroot "${SPAWNER_IMAGES_RUNROOT:-/run/spawner-images}")
export BUILDAH_ISOLATION=chroot

started=$(date +%s)
log() { printf '[images %s +%ss] %s\n' "$(date +%H:%M:%S)" "$(($(date +%s) - started))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is missing (Debian package $2; bash scripts/install-test-deps.sh installs it)"; }
sha() { sha256sum | cut -c1-"${1:-64}"; }

node_arch() {
  case "$(uname -m)" in
    x86_64) echo x64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) die "no Node.js binary package for $(uname -m)" ;;
  esac
}
deb_arch() { case "$(node_arch)" in x64) echo amd64 ;; arm64) echo arm64 ;; esac; }

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }
image_id() { "${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$1"; }
# Bytes of the image's layers, uncompressed (what it takes on a node's disk).
image_size() {
  "${BUILDAH[@]}" inspect --type image "$1" \
    | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log(JSON.parse(JSON.parse(s).Manifest).layers.reduce((n,l)=>n+l.size,0)))'
}

cmd_bundle() { node scripts/bundle.mjs "$@" --out "$OUT"; }

# The node binary: scripts/node-runtime.sh, the one home of the version and the fetch.
node_binary() { bash "$ROOT/scripts/node-runtime.sh" dir; }

# The base image (when SPAWNER_IMAGE_BASE is not set): Debian's libraries + the node binary.
cmd_base() {
  if [ -n "${SPAWNER_IMAGE_BASE:-}" ]; then
    image_exists "$SPAWNER_IMAGE_BASE" || "${BUILDAH[@]}" pull -q "$SPAWNER_IMAGE_BASE" >/dev/null \
      || die "cannot pull SPAWNER_IMAGE_BASE=$SPAWNER_IMAGE_BASE"
    echo "$SPAWNER_IMAGE_BASE"
    return
  fi
  need buildah buildah
  local key ref
  key=$(printf '%s\n' "$BASE_RECIPE_VERSION" "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$BASE_DEBS" "$NODE_VERSION" "$(deb_arch)" "$BASE_WEEK" | sha 12)
  ref="localhost/spawner-node-base:$NODE_VERSION-$SUITE-$key"
  if image_exists "$ref"; then
    echo "$ref"
    return
  fi
  need mmdebstrap mmdebstrap
  local node_dir tmp t0=$SECONDS
  node_dir=$(node_binary)
  tmp=$(mktemp -d)
  log "base: mmdebstrap $SUITE with updates and security ($BASE_DEBS) + node $NODE_VERSION -> $ref"
  # 65532 is the uid the images run as (distroless's "nonroot"); root and nobody as Debian has them.
  cat >"$tmp/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  printf 'root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n' >"$tmp/group"
  if ! mmdebstrap --variant=extract --arch="$(deb_arch)" --include="$BASE_DEBS" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$SUITE" "$tmp/rootfs.tar" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" >"$tmp/mmdebstrap.log" 2>&1; then
    tail -n 20 "$tmp/mmdebstrap.log" >&2
    die "mmdebstrap failed"
  fi
  # The extract variant runs no maintainer scripts (nor hooks): the rest is done on the mount.
  local ctr mnt
  ctr=$("${BUILDAH[@]}" from --quiet scratch)
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  tar -xf "$tmp/rootfs.tar" -C "$mnt" --numeric-owner
  install -m 644 "$tmp/passwd" "$tmp/group" "$mnt/etc/"
  install -d -o 65532 -g 65532 "$mnt/home/nonroot"
  install -D -m 755 "$node_dir/bin/node" "$mnt/usr/local/bin/node"
  install -D -m 644 "$node_dir/LICENSE" "$mnt/usr/share/doc/nodejs/LICENSE"
  # Set by the container runtime; the host's must not leak into the image.
  rm -rf "$mnt/etc/apt" "$mnt/var/cache/apt" "$mnt/var/lib/apt" "$mnt/etc/hostname"
  : >"$mnt/etc/resolv.conf"
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$NODE_VERSION" --cmd node --arch "$(deb_arch)" --os linux \
    --label org.opencontainers.image.description="Debian $SUITE libraries and Node.js $NODE_VERSION (scripts/images.sh)" "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$ref" >/dev/null
  rm -rf "$tmp"
  log "base: built in $((SECONDS - t0)) s, $(($(image_size "$ref") / 1048576)) MiB"
  echo "$ref"
}

# Everything an image is made of: the base image, the Dockerfile and the bundle's files.
image_key() {
  local c=$1 base_id=$2
  {
    echo "$base_id"
    sha256sum Dockerfile .dockerignore
    (cd "$OUT/$c" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha 16
}

cmd_build() {
  need buildah buildah
  local names=("$@")
  [ "${#names[@]}" -gt 0 ] || names=("${COMPONENTS[@]}")
  log "bundling: ${names[*]}"
  cmd_bundle "${names[@]}"
  local base base_id
  base=$(cmd_base)
  base_id=$(image_id "$base")
  local json="" c key ref cached t0 secs size repos="" keep="$base"
  [ -n "${SPAWNER_IMAGE_BASE:-}" ] || repos="${base%:*}"
  for c in "${names[@]}"; do
    key=$(image_key "$c" "$base_id")
    ref="localhost/spawner-$c:$key"
    t0=$SECONDS
    if image_exists "$ref"; then
      cached=true
      log "$c: $ref (cached)"
    else
      cached=false
      log "$c: building $ref"
      "${BUILDAH[@]}" bud --quiet --isolation chroot --target "$c" --build-arg "BASE=$base" \
        -f Dockerfile -t "$ref" "$ROOT" >/dev/null || die "$c: buildah bud failed"
    fi
    secs=$((SECONDS - t0))
    size=$(image_size "$ref")
    log "$c: $((size / 1048576)) MiB"
    repos+=" localhost/spawner-$c"
    keep+=" $ref"
    json+="${json:+,}\"$c\":{\"ref\":\"$ref\",\"key\":\"$key\",\"base\":\"$base\",\"cached\":$cached,\"seconds\":$secs,\"size\":$size}"
  done
  prune "$repos" "$keep"
  printf '{"storage":{"root":"%s","runroot":"%s"},"images":{%s}}\n' "$STORE/storage" "${BUILDAH[4]}" "$json" >"$OUT/images.json"
  log "done: $OUT/images.json"
}

# Removes the older images of `repos` (localhost/spawner-<name>), keeping the references given.
prune() {
  local repos=$1 keep=$2 line
  "${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' | while read -r line; do
    [[ " $repos " == *" ${line%:*} "* && " $keep " != *" $line "* ]] || continue
    if "${BUILDAH[@]}" rmi "$line" >/dev/null 2>&1; then log "removed the older $line"; fi
  done
}

cmd_push() {
  local registry=${1:?usage: images.sh push REGISTRY [TAG]} tag=${2:-}
  [ -n "$tag" ] || tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' chart/Chart.yaml)
  [ -f "$OUT/images.json" ] || die "nothing built yet: bash scripts/images.sh build"
  local c ref
  for c in "${COMPONENTS[@]}"; do
    ref=$(node -e 'const j=require(process.argv[1]);const i=j.images[process.argv[2]];if(i)console.log(i.ref)' "$OUT/images.json" "$c")
    [ -n "$ref" ] || die "$c was not built: bash scripts/images.sh build"
    log "pushing $ref -> $registry/spawner-$c:$tag"
    "${BUILDAH[@]}" push --quiet "$ref" "docker://$registry/spawner-$c:$tag"
  done
}

case "${1:-}" in
  build | base | bundle | push)
    cmd=$1
    shift
    "cmd_$cmd" "$@"
    ;;
  list) cat "$OUT/images.json" ;;
  -h | --help | "") sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" ;;
  *) die "unknown command '$1' (try --help)" ;;
esac
