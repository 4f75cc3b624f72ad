#!/usr/bin/env bash
# Start a private Docker engine for agentctl's container tools and tests, and build the
# local test image. Idempotent: a second run finds the engine up and the image built.
#
#   scripts/docker-engine.sh            # engine at unix://$AGENTCTL_DOCKER_DIR/docker.sock
#   export DOCKER_HOST=$(scripts/docker-engine.sh --print-host)
#
# Needs root (dockerd) and Debian's apt when docker.io / busybox-static are missing.
# No registry is needed: the image agentctl-test/busybox is imported from busybox-static.
set -euo pipefail

DIR="${AGENTCTL_DOCKER_DIR:-/tmp/agentctl-docker}"
SOCK="$DIR/docker.sock"
HOST="unix://$SOCK"
IMAGE="${AGENTCTL_TEST_IMAGE:-agentctl-test/busybox}"

if [[ "${1:-}" == "--print-host" ]]; then
  echo "$HOST"
  exit 0
fi

log() { echo "docker-engine: $*" >&2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker >/dev/null || need+=(docker.io)
[[ -x /bin/busybox || -x /usr/bin/busybox ]] && busybox --list 2>/dev/null | grep -qx sleep || need+=(busybox-static)
command -v docker-compose >/dev/null || need+=(docker-compose)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$DIR"
if ! docker -H "$HOST" info >/dev/null 2>&1; then
  log "starting dockerd (data-root $DIR/data, socket $SOCK)"
  rm -f "$SOCK" "$DIR/dockerd.pid"
  # setsid: the engine outlives this script and is not killed with its process group.
  setsid dockerd --iptables=false --ip-masq=false \
    --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$DIR/dockerd.pid" \
    --host "$HOST" >"$DIR/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    docker -H "$HOST" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker -H "$HOST" info >/dev/null 2>&1 || { log "dockerd did not come up; see $DIR/dockerd.log"; tail -20 "$DIR/dockerd.log" >&2; exit 1; }
fi

if ! docker -H "$HOST" image inspect "$IMAGE" >/dev/null 2>&1; then
  log "building $IMAGE from busybox-static"
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/workspace" "$rootfs/etc"
  cp "$(command -v busybox)" "$rootfs/bin/busybox"
  for app in $("$rootfs/bin/busybox" --list); do
    [[ "$app" == busybox ]] || ln -sf busybox "$rootfs/bin/$app"
  done
  echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
  tar -C "$rootfs" -c . | docker -H "$HOST" import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
fi
log "engine ready at $HOST (image $IMAGE)"
