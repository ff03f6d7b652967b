#!/bin/sh
# Build dass's container images with podman from a Debian root made by debootstrap: no
# container registry is ever contacted. Python packages come from the Python registry through
# the host's own pip configuration and CA bundle (mounted read-only into the build).
#
#   images/build.sh [IMAGE...]        IMAGE: base sem kmap stm hub (default: all of them)
#   images/build.sh --test TAG        the CI test image (the base image) as TAG, unless it exists
#
# Tags: localhost/dass-<name>:<dass version> (and :latest); the stacks' images are
# localhost/dass-stack-<stack>:<version>, the names c.StackRegistry.stacks[...]['image'] uses.
# Settings (environment): DEBIAN_SUITE (bookworm: Python 3.11 like dass's own tests),
# DEBIAN_MIRROR (default: the first mirror of apt's sources on this machine).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_IMAGE=localhost/dass-debian:$SUITE
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n 1)

command -v podman >/dev/null 2>&1 || { echo "podman is not installed: run 'make podman' as root" >&2; exit 3; }

mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *\([^ ]*debian\/*\)$/\1/p' | head -n 1)
    [ -n "$m" ] || m=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*debian\/*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
    echo "${m:-http://deb.debian.org/debian}"
}

debian() {  # the Debian root file system as an image (about 2.5 min, once per machine)
    podman image exists "$DEBIAN_IMAGE" && return
    command -v debootstrap >/dev/null 2>&1 || { echo "debootstrap is not installed: run 'make podman' as root" >&2; exit 3; }
    tmp=$(mktemp -d /var/tmp/dass-debootstrap.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    echo "debootstrap $SUITE from $(mirror) ..."
    debootstrap --variant=minbase "$SUITE" "$tmp/root" "$(mirror)" >"$tmp/log" 2>&1 \
        || { tail -n 20 "$tmp/log" >&2; exit 1; }
    tar -C "$tmp/root" -c . | podman import -q - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$tmp"; trap - EXIT
}

# read-only mounts that let pip inside the build use the host's configuration: its CA bundle
# (PIP_CERT, which overrides pip.conf's cert), pip.conf and the local files and folders it
# names (constraints, find-links, file:// indexes); never anything under /etc/ssl, which apt
# inside the build rewrites
pip_mounts() {
    ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    [ -f "$ca" ] && printf -- '-v %s:/etc/dass-build/ca.crt:ro ' "$ca"
    for f in /etc/pip.conf /etc/xdg/pip/pip.conf; do
        [ -f "$f" ] && printf -- '-v %s:%s:ro ' "$f" "$f"
    done
    { cat /etc/pip.conf /etc/xdg/pip/pip.conf 2>/dev/null; echo "${PIP_FIND_LINKS:-} ${PIP_EXTRA_INDEX_URL:-} ${PIP_INDEX_URL:-}"; } \
        | tr ' =' '\n\n' | sed -n 's|^file://||; /^\/etc\/ssl\//d; /^\/[^ ]*$/p' | sort -u | while read -r d; do
            [ -e "$d" ] && [ "$d" != / ] && printf -- '-v %s:%s:ro ' "$d" "$d"
        done
    return 0
}

context() {  # a small build context: what the Containerfiles copy, nothing else
    ctx=$(mktemp -d /var/tmp/dass-context.XXXXXX)
    cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$ctx/"
    (cd "$ROOT" && tar -c --exclude=__pycache__ --exclude='*.pyc' dass) | tar -C "$ctx" -x
    echo "$ctx"
}

build() {  # build NAME TAG [ARG=VALUE...]
    name=$1; tag=$2; shift 2
    args=""
    for a in "$@"; do args="$args --build-arg $a"; done
    ctx=$(context)
    echo "building $tag from images/$name/Containerfile ..."
    # shellcheck disable=SC2046,SC2086
    if ! podman build --network host $(pip_mounts) --build-arg PIP_CERT=/etc/dass-build/ca.crt \
            -f "$ROOT/images/$name/Containerfile" -t "$tag" $args "$ctx" >"$ctx.log" 2>&1; then
        tail -n 60 "$ctx.log" >&2
        rm -rf "$ctx" "$ctx.log"
        echo "building $tag failed" >&2
        exit 1
    fi
    rm -rf "$ctx" "$ctx.log"
}

if [ "${1:-}" = "--test" ]; then
    tag=${2:?usage: images/build.sh --test TAG}
    podman image exists "$tag" && { echo "$tag exists"; exit 0; }
    debian
    build base "$tag" "DEBIAN_IMAGE=$DEBIAN_IMAGE"
    echo "$tag built"
    exit 0
fi

[ $# -gt 0 ] || set -- base sem kmap stm hub
debian
for name in "$@"; do
    case $name in
        base) build base "localhost/dass-base:$VERSION" "DEBIAN_IMAGE=$DEBIAN_IMAGE"
              podman tag "localhost/dass-base:$VERSION" localhost/dass-base:latest ;;
        sem|kmap|stm)
              podman image exists "localhost/dass-base:$VERSION" || "$0" base
              build "$name" "localhost/dass-stack-$name:$VERSION" "BASE_IMAGE=localhost/dass-base:$VERSION"
              podman tag "localhost/dass-stack-$name:$VERSION" "localhost/dass-stack-$name:latest" ;;
        hub)  podman image exists "localhost/dass-base:$VERSION" || "$0" base
              build hub "localhost/dass-hub:$VERSION" "BASE_IMAGE=localhost/dass-base:$VERSION"
              podman tag "localhost/dass-hub:$VERSION" localhost/dass-hub:latest ;;
        *) echo "unknown image $name; choose from: base sem kmap stm hub" >&2; exit 2 ;;
    esac
    echo "built $name ($VERSION)"
done
