#!/usr/bin/env bash
# Builds the goldmount CSI image (goldmount/csi:dev) without a registry:
#   1. a Debian 12 minbase root made by debootstrap (or the cached tarball
#      of an earlier run), imported as goldmount/debian-base:bookworm;
#   2. cargo build -p csi -p connector -p zfs (unless --no-build);
#   3. docker build FROM that local image; apt inside the build reaches the
#      Debian mirror over the host's network (--network host), the only
#      network a private dockerd started with --bridge=none has;
#   4. a check that the binaries and every tool the node plugin runs are in
#      the image.
# See README.md (decisions, timings).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: build.sh [options]
  --docker-host unix:///path   Docker engine to use (default: $DOCKER_HOST, else the client's default)
  --no-build                   do not run cargo; use the binaries already built
  --profile release|debug      which cargo profile's binaries go in (default: release)
  --bin-dir DIR                take the binaries from DIR (implies --no-build)
  --cache-dir DIR              where the debootstrap tarball is kept (default: /var/cache/goldmount-csi-image)
  --tag NAME                   image name (default: goldmount/csi:dev)
  --rebuild-base               run debootstrap and import again even if the base exists
  --base-only                  make (or reuse) the base image, then stop
  -h, --help                   this text
environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
             DEBIAN_SECURITY_MIRROR (default http://security.debian.org/debian-security),
             CARGO_TARGET_DIR (default <repo>/target)
EOF
}

die() {
    echo "build.sh: $*" >&2
    exit 1
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROFILE=release
NO_BUILD=0
BIN_DIR=""
CACHE_DIR=/var/cache/goldmount-csi-image
TAG=goldmount/csi:dev
REBUILD_BASE=0
BASE_ONLY=0
SUITE=bookworm
BASE_TAG="goldmount/debian-base:$SUITE"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://security.debian.org/debian-security}

while [ $# -gt 0 ]; do
    case "$1" in
        --docker-host) [ $# -ge 2 ] || die "--docker-host needs a value (unix:///path/docker.sock)"
                       export DOCKER_HOST="$2"; shift 2 ;;
        --no-build)    NO_BUILD=1; shift ;;
        --profile)     [ $# -ge 2 ] || die "--profile needs release or debug"
                       PROFILE="$2"; shift 2 ;;
        --bin-dir)     [ $# -ge 2 ] || die "--bin-dir needs a directory"
                       BIN_DIR="$2"; NO_BUILD=1; shift 2 ;;
        --cache-dir)   [ $# -ge 2 ] || die "--cache-dir needs a directory"
                       CACHE_DIR="$2"; shift 2 ;;
        --tag)         [ $# -ge 2 ] || die "--tag needs an image name"
                       TAG="$2"; shift 2 ;;
        --rebuild-base) REBUILD_BASE=1; shift ;;
        --base-only)   BASE_ONLY=1; NO_BUILD=1; shift ;;
        -h|--help)     usage; exit 0 ;;
        *)             usage >&2; die "unknown argument '$1'" ;;
    esac
done

case "$PROFILE" in
    release|debug) ;;
    *) die "--profile must be release or debug, not '$PROFILE'" ;;
esac

# The classic builder: it takes a local FROM image as it is and never
# pulls. (This machine's client has no buildx; BuildKit would need it.)
export DOCKER_BUILDKIT=0

command -v docker >/dev/null || die "no docker client in PATH: apt-get install docker.io"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "no Docker engine answers at ${DOCKER_HOST:-the default socket}: start one (README.md shows a private one) and pass --docker-host unix:///path/docker.sock"

declare -a TIMINGS=()
now() { date +%s.%N; }
took() { # name start
    local t
    t=$(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    TIMINGS+=("$1: ${t} s")
    echo "== $1 took ${t} s"
}

WORK=$(mktemp -d /tmp/gmcsi-image.XXXXXX)
cleanup() {
    # debootstrap mounts /proc and /sys in the root while it installs: a
    # failed run may leave them, and rm must never descend into them.
    awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r \
        | while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# 1. base image -------------------------------------------------------------
TARBALL="$CACHE_DIR/debian-$SUITE-minbase.tar"
if [ "$REBUILD_BASE" = 0 ] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    echo "== $BASE_TAG exists: reused"
else
    if [ "$REBUILD_BASE" = 1 ] || [ ! -s "$TARBALL" ]; then
        [ "$(id -u)" = 0 ] || die "debootstrap needs root (device nodes, chroot)"
        command -v debootstrap >/dev/null || die "no debootstrap: apt-get install debootstrap"
        mkdir -p "$CACHE_DIR"
        ROOTFS="$WORK/rootfs"
        t0=$(now)
        debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" \
            || die "debootstrap $SUITE from $MIRROR failed (log: $ROOTFS/debootstrap/debootstrap.log); set DEBIAN_MIRROR to a reachable mirror"
        took "debootstrap" "$t0"
        # What an image must not carry: the downloaded .debs, apt lists, the
        # build host's name and resolver (docker provides both at run time).
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
               "$ROOTFS"/etc/hostname "$ROOTFS"/etc/resolv.conf
        t0=$(now)
        tar -C "$ROOTFS" --numeric-owner -cf "$TARBALL.tmp" .
        mv "$TARBALL.tmp" "$TARBALL"
        rm -rf "$ROOTFS"
        took "rootfs tarball" "$t0"
    else
        echo "== cached rootfs $TARBALL reused"
    fi
    t0=$(now)
    docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' \
        "$TARBALL" "$BASE_TAG" >/dev/null
    took "docker import" "$t0"
fi

if [ "$BASE_ONLY" = 1 ]; then
    for t in "${TIMINGS[@]}"; do echo "   $t"; done
    exit 0
fi

# 2. binaries ---------------------------------------------------------------
if [ -z "$BIN_DIR" ]; then
    BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/$PROFILE"
fi
if [ "$NO_BUILD" = 0 ]; then
    t0=$(now)
    if [ "$PROFILE" = release ]; then
        (cd "$REPO" && cargo build --release -p csi -p connector -p zfs)
    else
        (cd "$REPO" && cargo build -p csi -p connector -p zfs)
    fi
    took "cargo build ($PROFILE)" "$t0"
fi
mkdir -p "$WORK/ctx/bin"
for b in goldmount-csi goldmount; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing: build it (cargo build --release -p csi -p connector) or drop --no-build"
    cp "$BIN_DIR/$b" "$WORK/ctx/bin/"
done
if [ -x "$BIN_DIR/goldmount-zfs-reguid" ]; then
    cp "$BIN_DIR/goldmount-zfs-reguid" "$WORK/ctx/bin/"
else
    echo "== goldmount-zfs-reguid not built: left out"
fi
cp "$HERE/Dockerfile" "$WORK/ctx/Dockerfile"

# 3. image ------------------------------------------------------------------
declare -a PROXY_ARGS=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!v:-}" ]; then PROXY_ARGS+=(--build-arg "$v=${!v}"); fi
done
t0=$(now)
docker build --network host \
    --build-arg "BASE=$BASE_TAG" \
    --build-arg "DEBIAN_MIRROR=$MIRROR" \
    --build-arg "DEBIAN_SECURITY_MIRROR=$SECURITY_MIRROR" \
    "${PROXY_ARGS[@]}" \
    -t "$TAG" "$WORK/ctx"
took "docker build" "$t0"

# 4. check ------------------------------------------------------------------
t0=$(now)
docker run --rm --network none "$TAG" goldmount-csi --help >/dev/null \
    || die "goldmount-csi --help failed in $TAG (a binary built against a newer glibc than Debian 12's?)"
docker run --rm --network none "$TAG" sh -c '
    missing=""
    for t in goldmount-csi goldmount mount umount losetup blockdev findmnt lvm vgimportclone dmsetup \
             iscsiadm multipath multipathd xfs_admin xfs_repair btrfs btrfstune tune2fs e2fsck \
             fsck.vfat udevadm modprobe; do
        command -v "$t" >/dev/null || missing="$missing $t"
    done
    [ -z "$missing" ] || { echo "missing in the image:$missing" >&2; exit 1; }
' || die "$TAG lacks tools the node plugin runs"
took "image check" "$t0"

SIZE=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "== $TAG: $((SIZE / 1000000)) MB (base $(( $(docker image inspect -f '{{.Size}}' "$BASE_TAG") / 1000000 )) MB)"
for t in "${TIMINGS[@]}"; do echo "   $t"; done
