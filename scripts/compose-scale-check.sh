#!/usr/bin/env bash
# Runs compose.scale.yaml with podman-compose and checks it the way a client sees it, through the
# balancer on 127.0.0.1:8080 only: build the image, start PostgreSQL and Redis and wait for their
# health checks, start the two service instances and wait until each is ready, start HAProxy,
# then register, log in, refresh and call /me until both instances have served the same session;
# stop one instance and show that refreshes, /me and logins still succeed, all served by the
# other; back the database up with pg_dump while it serves, restore the dump into an empty
# database and swap it in (docs/scaling.md), and show that the session from before the backup
# refreshes while what came after it is gone; then tear everything down (containers, network,
# volumes). Bounded: the whole run is
# killed after COMPOSE_CHECK_TIMEOUT seconds (default 900, the first image build included).
# Prints "compose scale check: OK" last.
#
#   scripts/compose-scale-check.sh
#
# Needs podman and podman-compose, and the images postgres:15, redis:7 and haproxy:2.8 (pulled
# from Docker Hub, or present locally). Where no registry is reachable,
# ../shared/tools/container-base (CONTAINER_BASE) provides the node:24-slim base image of the
# service's own image, and .ci/standin-images.sh builds local stand-ins for those three.
#
# Secrets: fresh ones for this run, in this process's environment. With podman-compose 1.0.3, a
# `.env` beside compose.scale.yaml takes precedence over them (Docker Compose does the opposite).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."
ROOT=$PWD

LIMIT=${COMPOSE_CHECK_TIMEOUT:-900}
if [ -z "${_COMPOSE_CHECK_BOUNDED:-}" ]; then
  # The whole run under one deadline; the EXIT trap below still tears down on TERM.
  exec timeout -k 30 "$LIMIT" env _COMPOSE_CHECK_BOUNDED=1 "$0" "$@"
fi

PROJECT=auth-scale-check
COMPOSE=(podman-compose -p "$PROJECT" -f compose.scale.yaml)
BASE=http://127.0.0.1:8080
STATE=$(mktemp)
DUMP=$(mktemp)
step () { printf '\n--- compose scale: %s (%ss)\n' "$1" "$SECONDS"; }

container () { # the container of a compose service, by the labels podman-compose sets
  podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1" | head -1
}

cleanup () {
  status=$?
  trap - EXIT TERM INT
  if [ $status -ne 0 ]; then
    for s in lb auth1 auth2 postgres; do
      c=$(container "$s" 2>/dev/null || true)
      [ -n "$c" ] || continue
      echo "--- compose scale: log of $s (last 30 lines)"
      podman logs --tail 30 "$c" 2>&1 || true
    done
  fi
  # -v: the image declares VOLUME /data, and podman-compose's `down` leaves anonymous volumes.
  podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r podman rm -f -v -t 10 >/dev/null 2>&1 || true
  "${COMPOSE[@]}" down -v -t 10 >/dev/null 2>&1 || true
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  rm -f "$STATE" "$DUMP"
  [ $status -ne 124 ] || echo "compose scale check: stopped after COMPOSE_CHECK_TIMEOUT=$LIMIT s"
  [ $status -eq 0 ] || echo "compose scale check: FAILED"
  exit $status
}
trap cleanup EXIT
trap 'exit 124' TERM INT

step "podman"
CB=${CONTAINER_BASE:-$ROOT/../shared/tools/container-base}
PULL=()
if [ -x "$CB" ]; then
  # No registry here: a local stand-in for node:24-slim (see the tool's README).
  "$CB" setup >/dev/null
  eval "$("$CB" env)"
  "$CB" image node:24-slim
  PULL=(--pull=never)
fi
podman --version
podman-compose --version 2>/dev/null | grep -i 'podman-compose' || true
if node -e "const s=require('node:net').connect(8080,'127.0.0.1');s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1))"; then
  echo "127.0.0.1:8080 is in use: the balancer publishes that port"; exit 1
fi

step "images"
for image in docker.io/library/postgres:15 docker.io/library/redis:7 docker.io/library/haproxy:2.8; do
  if ! podman image exists "$image" && ! podman pull -q "$image" >/dev/null; then
    echo "cannot pull $image: compose.scale.yaml needs the official postgres:15, redis:7 and haproxy:2.8 images"
    exit 2
  fi
  standin=$(podman image inspect --format '{{ index .Labels "io.auth-service.stand-in" }}' "$image" 2>/dev/null || true)
  if [ -n "$standin" ] && [ "$standin" != '<no value>' ]; then
    echo "    $image: STAND-IN ($standin)"
  else
    echo "    $image"
  fi
done
podman build --format docker "${PULL[@]}" -t auth-service:latest .

export POSTGRES_PASSWORD KEY_ENCRYPTION_KEY
POSTGRES_PASSWORD=$(node -e "console.log(require('node:crypto').randomBytes(24).toString('hex'))")
KEY_ENCRYPTION_KEY=$(node -e "console.log(require('node:crypto').randomBytes(32).toString('hex'))")

wait_healthy () { # $1: service, $2: seconds; the container's own health check, run by hand
  # (podman without systemd does not run health checks on a timer).
  local c
  c=$(container "$1")
  [ -n "$c" ] || { echo "no container for $1"; return 1; }
  for _ in $(seq 1 "$2"); do
    if podman healthcheck run "$c" >/dev/null 2>&1; then echo "    $1 healthy after ${SECONDS}s"; return 0; fi
    sleep 1
  done
  echo "$1 did not become healthy within $2 s"; return 1
}

up () { # podman-compose up of some services; it also tries to create the services they depend
  # on, which already run: those "name is already in use" errors are expected and left out.
  "${COMPOSE[@]}" up -d --no-build "$@" 2> >(grep -v 'is already in use' >&2) >/dev/null
}

step "PostgreSQL and Redis"
# podman-compose 1.0.3 ignores `condition: service_healthy`: start in order, by hand.
up postgres redis
wait_healthy postgres 90
wait_healthy redis 30

wait_ready () { # $@: services; each instance's own /ready, from inside its container
  local s c i
  for s in "$@"; do
    c=$(container "$s")
    for i in $(seq 1 90); do
      if podman exec "$c" node -e "fetch('http://127.0.0.1:3000/ready').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))" 2>/dev/null; then
        echo "    $s ready after ${SECONDS}s"; break
      fi
      [ "$i" -lt 90 ] || { echo "$s was not ready within 90 s"; return 1; }
      sleep 1
    done
  done
}

wait_balanced () { # the balancer answers /ready, and has had time to check every instance
  local i
  for i in $(seq 1 60); do
    if node -e "fetch('$BASE/ready').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))" 2>/dev/null; then break; fi
    [ "$i" -lt 60 ] || { echo "the balancer did not answer /ready within 30 s"; return 1; }
    sleep 0.5
  done
  # Every instance passes the balancer's own /ready check (every 2 s, rise 2) before traffic is judged.
  sleep 5
}

step "two service instances"
up auth1 auth2
wait_ready auth1 auth2

step "the balancer on $BASE"
up lb
wait_balanced

step "one session through the balancer, served by both instances"
node scripts/compose-scale-check.mjs both "$BASE" "$STATE" auth1,auth2

step "stop auth1; the same session, and new logins, still served"
t0=$(date +%s%N)
"${COMPOSE[@]}" stop -t 15 auth1 >/dev/null
t1=$(date +%s%N)
code=$(podman inspect --format '{{.State.ExitCode}}' "$(container auth1)")
echo "    auth1 stopped in $(( (t1 - t0) / 1000000 )) ms, exit code $code (0: drained on SIGTERM; 137: killed after 15 s)"
node scripts/compose-scale-check.mjs survivor "$BASE" "$STATE" auth2

step "backup with pg_dump while auth2 serves (docs/scaling.md, \"Backup and restore\")"
# The commands of docs/scaling.md, addressed to the container with podman exec: podman-compose
# 1.0.3's `exec` writes its own lines (with the service's environment) to stdout, into the dump.
PG=$(container postgres)
podman exec "$PG" pg_dump -U auth -d auth -Fc >"$DUMP"
tables=$(podman exec -i "$PG" pg_restore --list <"$DUMP" | grep -c ' TABLE DATA ' || true)
echo "    dump: $(wc -c <"$DUMP") bytes, $tables tables with data"
[ "$tables" -gt 0 ] || { echo "the dump holds no table data"; exit 1; }
node scripts/compose-scale-check.mjs later "$BASE" "$STATE" auth2

step "restore into an empty database with the service stopped, swap it in, start the instances"
"${COMPOSE[@]}" stop -t 15 auth2 >/dev/null
podman exec "$PG" dropdb -U auth --if-exists auth_restored
podman exec "$PG" createdb -U auth auth_restored
podman exec -i "$PG" pg_restore -U auth -d auth_restored --no-owner --exit-on-error <"$DUMP"
podman exec "$PG" psql -U auth -d postgres -q -v ON_ERROR_STOP=1 \
  -c 'ALTER DATABASE auth RENAME TO auth_before_restore' -c 'ALTER DATABASE auth_restored RENAME TO auth'
"${COMPOSE[@]}" start auth1 auth2 >/dev/null
wait_ready auth1 auth2
wait_balanced
node scripts/compose-scale-check.mjs restored "$BASE" "$STATE" auth1,auth2

step "down (the EXIT trap removes containers, their volumes and the network)"
echo
echo "compose scale check: OK (${SECONDS}s)"
