#!/usr/bin/env bash
# Builds the service's Docker image and checks it the way an operator runs it: a container with
# a data volume, published on 127.0.0.1 only, and a smoke test through it (register -> login ->
# refresh -> JWKS verification with jose), the non-root user, the HEALTHCHECK, the admin CLI
# inside the container, data kept when the container is replaced, and a clean stop on SIGTERM
# within a few seconds. Prints the image size and, last, "docker smoke: OK".
#
# No Docker engine or registry is reachable here: podman builds the unchanged Dockerfile, and
# ../shared/tools/container-base provides a local stand-in for the node:24-slim base image
# (see its README). Called by .ci/run after the tests; runs on its own too: .ci/docker-smoke.sh
set -euo pipefail
# podman, debootstrap and runc live in the sbin directories, which a minimal PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."
ROOT=$PWD
CB=${CONTAINER_BASE:-$ROOT/../shared/tools/container-base}
IMAGE=auth-service:ci
NAME=auth-ci-$$
VOLUME=auth-ci-data-$$
STATE=$(mktemp)

now_ms () { date +%s%3N; }
START=$(now_ms)
LAST=$START
step () { printf '\n--- docker: %s\n' "$1"; LAST=$(now_ms); }
took () { local t; t=$(now_ms); printf '    (%s: %d.%03d s)\n' "$1" $(((t - LAST) / 1000)) $(((t - LAST) % 1000)); LAST=$t; }

cleanup () {
  status=$?
  if [ $status -ne 0 ] && podman container exists "$NAME" 2>/dev/null; then
    echo "--- docker: container log (last 40 lines)"
    podman logs --tail 40 "$NAME" 2>&1 || true
  fi
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  rm -f "$STATE"
  [ $status -eq 0 ] || echo "docker smoke: FAILED"
}
trap cleanup EXIT

step "podman and the node:24-slim base image (container-base)"
"$CB" setup >/dev/null
eval "$("$CB" env)"
"$CB" image node:24-slim
podman --version
took "setup + base image"

step "podman build"
podman build --format docker --pull=never -t "$IMAGE" .
took "build"

# A free port on the host for the published container port (3000 inside).
PORT=$(node -e "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
BASE=http://127.0.0.1:$PORT
export METRICS_TOKEN=$(node -e "console.log(require('node:crypto').randomBytes(24).toString('base64url'))")

run_container () {
  # PUBLIC_URL is the address clients use: the issuer and jwks_uri in discovery. A loopback
  # http URL is allowed with NODE_ENV=production (anything else must be https). In production
  # /metrics is served on the main port only with METRICS_TOKEN (docker-smoke.mjs sends it).
  podman run -d --name "$NAME" -p "127.0.0.1:$PORT:3000" -v "$VOLUME:/data" -e "PUBLIC_URL=$BASE" \
    -e "METRICS_TOKEN=$METRICS_TOKEN" "$IMAGE" >/dev/null
}

wait_for_health () {
  for _ in $(seq 1 120); do
    if node -e "fetch('$BASE/health').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))" 2>/dev/null; then return 0; fi
    sleep 0.25
  done
  echo "the service did not answer /health on $BASE"
  return 1
}

stop_container () {
  local t0 t1 code
  t0=$(now_ms)
  podman stop -t 10 "$NAME" >/dev/null   # SIGTERM, then SIGKILL after 10 s
  t1=$(now_ms)
  code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
  printf '    stopped by SIGTERM in %d ms, exit code %s\n' $((t1 - t0)) "$code"
  test "$code" = 0 || { echo "the service did not exit cleanly on SIGTERM (exit $code)"; return 1; }
  test $((t1 - t0)) -lt 5000 || { echo "the service took $((t1 - t0)) ms to stop"; return 1; }
}

step "run with a data volume on 127.0.0.1:$PORT"
podman volume create "$VOLUME" >/dev/null
run_container
wait_for_health
took "start to first 200 on /health"
test "$(podman exec "$NAME" id -u)" = 1000 || { echo "not running as uid 1000"; exit 1; }
echo "    runs as $(podman exec "$NAME" id -un) (uid $(podman exec "$NAME" id -u)), NODE_ENV=$(podman exec "$NAME" printenv NODE_ENV)"
podman healthcheck run "$NAME" >/dev/null || { echo "the image's HEALTHCHECK failed"; exit 1; }
echo "    HEALTHCHECK: healthy"
if podman exec "$NAME" sh -c 'command -v gcc || command -v g++ || command -v make || command -v python3' >/dev/null 2>&1; then
  echo "a compiler or python is in the runtime image"; exit 1
fi
if podman exec "$NAME" test -e node_modules/typescript; then echo "dev dependencies in the runtime image"; exit 1; fi
echo "    no compilers, no dev dependencies in the runtime image"

step "smoke test through the container"
node .ci/docker-smoke.mjs first "$BASE" "$STATE"
took "smoke test"

step "admin CLI inside the container"
podman exec "$NAME" node dist/src/cli/admin.js users
podman exec "$NAME" node dist/src/cli/admin.js backup /data/smoke-backup.db
podman exec "$NAME" node dist/src/cli/admin.js audit --limit 5
took "admin CLI"

step "stop (SIGTERM), replace the container, same volume"
stop_container
podman rm "$NAME" >/dev/null
run_container
wait_for_health
node .ci/docker-smoke.mjs again "$BASE" "$STATE"
took "replace and check"

step "final stop"
stop_container

step "image"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
printf '    %s: %d MB (%s bytes)\n' "$IMAGE" $((size / 1000000)) "$size"
# The whole history is read before it is cut to 8 lines: with pipefail, `podman history | head`
# fails (SIGPIPE, exit 141) whenever head closes the pipe before podman has written everything.
layers=$(podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE")
printf '%s\n' "$layers" | sed -n '1,8p' | cut -c1-120 | sed 's/^/    /'

total=$(( $(now_ms) - START ))
echo
printf 'docker smoke: OK (image %d MB, %d.%d s)\n' $((size / 1000000)) $((total / 1000)) $(((total % 1000) / 100))
