#!/usr/bin/env bash
# Makes sure the three official images that compose.scale.yaml uses exist in podman's storage:
# docker.io/library/postgres:15, docker.io/library/redis:7 and docker.io/library/haproxy:2.8.
# An image that is present is left alone; a missing one is pulled; where no registry is
# reachable (this machine and CI reach only the npm registry and Debian's apt mirror), a local
# STAND-IN is built under the official name, so that scripts/compose-scale-check.sh runs the
# unchanged compose file:
#
#   FROM localhost/container-base/debian:bookworm-minbase  (../shared/tools/container-base)
#   + Debian bookworm's postgresql-15, redis-server or haproxy, installed with apt in the build
#   + a small entrypoint reproducing only what compose.scale.yaml relies on from the official
#     image (see each entrypoint below).
#
# A stand-in is NOT the official image: it carries the label io.auth-service.stand-in, and
# Debian's versions differ (HAProxy 2.6 instead of 2.8, Redis 7.0 instead of 7.x latest,
# PostgreSQL 15.x of Debian). On a machine with a registry, the real images are pulled and no
# stand-in is built. A stand-in is rebuilt when its recipe in this file changes.
#
#   .ci/standin-images.sh          (as root, like container-base; prints what it did)
#
# Bounded: killed after STANDIN_TIMEOUT seconds (default 600; a first build takes about a minute).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "$0")/.."
ROOT=$PWD

LIMIT=${STANDIN_TIMEOUT:-600}
if [ -z "${_STANDIN_BOUNDED:-}" ]; then
  exec timeout -k 30 "$LIMIT" env _STANDIN_BOUNDED=1 "$0" "$@"
fi

LABEL=io.auth-service.stand-in
BASE_REF=localhost/container-base/debian:bookworm-minbase
WORK=$(mktemp -d)
BUILDING=0 BEFORE=""
note () { printf 'standin-images: %s\n' "$*"; }

working_containers () { # buildah's build containers FROM the Debian base, full ids
  podman ps -a --external --no-trunc -q --filter name=debian-working-container 2>/dev/null | sort
}

cleanup () {
  status=$?
  trap - EXIT TERM INT
  # A build stopped by the timeout leaves its working container behind: remove the ones that
  # appeared during this run.
  if [ $status -ne 0 ] && [ $BUILDING -eq 1 ]; then
    comm -13 <(printf '%s\n' "$BEFORE") <(working_containers) | xargs -r podman rm -f >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  [ $status -ne 124 ] || note "stopped after STANDIN_TIMEOUT=$LIMIT s"
  exit $status
}
trap cleanup EXIT
trap 'exit 124' TERM INT

CB=${CONTAINER_BASE:-$ROOT/../shared/tools/container-base}
if [ -x "$CB" ]; then
  "$CB" setup >/dev/null
  eval "$("$CB" env)"
fi

# Installs Debian packages in a build step (after COPY policy-rc.d, which stops the packages'
# maintainer scripts from trying to start services inside the build).
apt_install () {
  printf '%s' "apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null"
}
APT_CLEAN='rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/sbin/policy-rc.d'

# --- postgres:15 ----------------------------------------------------------------------------
recipe_postgres () {
  cat >"$1/Containerfile" <<EOF
FROM $BASE_REF
COPY policy-rc.d /usr/sbin/policy-rc.d
# Like the official image: no cluster made by the package (the entrypoint makes it in PGDATA).
RUN $(apt_install postgresql-common) \\
 && sed -ri 's/#(create_main_cluster) .*\$/\\1 = false/' /etc/postgresql-common/createcluster.conf \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null \\
 && $APT_CLEAN \\
 && mkdir -p /var/run/postgresql /var/lib/postgresql/data \\
 && chown -R postgres:postgres /var/run/postgresql /var/lib/postgresql \\
 && chmod 3777 /var/run/postgresql \\
 && /usr/lib/postgresql/15/bin/postgres --version
ENV PATH=\$PATH:/usr/lib/postgresql/15/bin PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
COPY docker-entrypoint.sh /usr/local/bin/
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
  cat >"$1/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# Stand-in for the official postgres image's entrypoint, reduced to what compose.scale.yaml uses:
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, a cluster in PGDATA made on the first start
# (trust on the local socket and loopback, scram-sha-256 for every other host,
# listen_addresses='*'), the server running as the postgres user, compose's command honoured.
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?the postgres stand-in needs POSTGRES_PASSWORD}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --auth=trust \
    --encoding=UTF8 -D "$PGDATA" >/dev/null
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 -q -U "$user" -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  echo "postgres stand-in: initialised $PGDATA (user $user, database $db)"
fi
exec "$@"
EOF
}

# --- redis:7 --------------------------------------------------------------------------------
recipe_redis () {
  cat >"$1/Containerfile" <<EOF
FROM $BASE_REF
COPY policy-rc.d /usr/sbin/policy-rc.d
RUN $(apt_install redis-server) \\
 && $APT_CLEAN \\
 && mkdir -p /data && chown redis:redis /data \\
 && redis-server --version && redis-cli --version
COPY docker-entrypoint.sh /usr/local/bin/
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
  cat >"$1/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in for the official redis image's entrypoint: options alone run redis-server, which runs
# as the redis user. The official image is built with protected mode off (the container network
# is the boundary); Debian's binary has it on, which without a password refuses every client
# that is not on loopback, so it is switched off here unless a config file is given.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  chown -R redis:redis /data
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ] && { [ $# -eq 1 ] || [ "${2#-}" != "$2" ]; }; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
EOF
}

# --- haproxy:2.8 ----------------------------------------------------------------------------
recipe_haproxy () {
  cat >"$1/Containerfile" <<EOF
FROM $BASE_REF
COPY policy-rc.d /usr/sbin/policy-rc.d
RUN $(apt_install haproxy) \\
 && $APT_CLEAN \\
 && mkdir -p /usr/local/etc/haproxy /var/lib/haproxy \\
 && chown haproxy:haproxy /var/lib/haproxy \\
 && haproxy -v | head -1
COPY docker-entrypoint.sh /usr/local/bin/
# The official image's stop signal: a soft stop that lets the connections finish.
STOPSIGNAL SIGUSR1
USER haproxy
WORKDIR /var/lib/haproxy
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOF
  cat >"$1/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in for the official haproxy image's entrypoint: options alone run haproxy, and haproxy
# runs in the foreground in master-worker mode (-W -db), logging to stdout as configured.
set -e
if [ "${1#-}" != "$1" ]; then set -- haproxy "$@"; fi
if [ "$1" = haproxy ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
EOF
}

declare -A WHAT=(
  [postgres]="docker.io/library/postgres:15"
  [redis]="docker.io/library/redis:7"
  [haproxy]="docker.io/library/haproxy:2.8"
)
VERSION_CMD_postgres='postgres --version'
VERSION_CMD_redis='redis-server --version'
VERSION_CMD_haproxy='haproxy -v | head -1'

base_ready=0
for name in postgres redis haproxy; do
  image=${WHAT[$name]}
  ctx=$WORK/$name
  mkdir -p "$ctx"
  "recipe_$name" "$ctx"
  printf '#!/bin/sh\nexit 101\n' >"$ctx/policy-rc.d"
  chmod 755 "$ctx/docker-entrypoint.sh" "$ctx/policy-rc.d"
  recipe=$(cat "$ctx/Containerfile" "$ctx/docker-entrypoint.sh" | sha256sum | cut -c1-16)

  if podman image exists "$image"; then
    had=$(podman image inspect --format "{{ index .Labels \"$LABEL-recipe\" }}" "$image" 2>/dev/null || true)
    if [ -z "$had" ] || [ "$had" = '<no value>' ]; then
      note "$image is present (not a stand-in): used as it is"
      continue
    fi
    if [ "$had" = "$recipe" ]; then
      note "$image is present: a STAND-IN built from Debian packages (label $LABEL), recipe $recipe"
      continue
    fi
    note "$image is a stand-in of an older recipe ($had): rebuilding"
  elif timeout 60 podman pull -q "$image" >/dev/null 2>&1; then
    note "$image pulled from the registry"
    continue
  else
    note "$image is absent and cannot be pulled (no registry reachable): building a STAND-IN"
  fi

  if [ $base_ready -eq 0 ]; then
    # container-base imports the Debian rootfs while it builds its node image.
    if ! podman image exists "$BASE_REF"; then
      [ -x "$CB" ] || { note "no $BASE_REF and no container-base ($CB) to make it"; exit 1; }
      "$CB" image --force node:24-slim
    fi
    base_ready=1
  fi
  old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  BEFORE=$(working_containers)
  BUILDING=1
  t0=$SECONDS
  podman build --format docker --pull=never --layers=false -q \
    --label "$LABEL=not the official image: Debian bookworm packages and a small entrypoint, built by .ci/standin-images.sh for compose.scale.yaml" \
    --label "$LABEL-for=$image" \
    --label "$LABEL-recipe=$recipe" \
    -t "$image" "$ctx" >/dev/null
  BUILDING=0
  if [ -n "$old_id" ] && [ "$(podman image inspect --format '{{.Id}}' "$image")" != "$old_id" ]; then
    podman rmi "$old_id" >/dev/null 2>&1 || true
  fi
  version_cmd=VERSION_CMD_$name
  version=$(podman run --rm --pull=never --network=none --entrypoint sh "$image" -c "${!version_cmd}" 2>/dev/null | head -1)
  note "built $image as a STAND-IN in $((SECONDS - t0)) s: $version"
done
note "done in ${SECONDS}s"
