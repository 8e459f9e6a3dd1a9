#!/usr/bin/env bash
# Installs PostgreSQL and Redis from the OS packages and starts one private server of each on
# ports of their own, with their data under DIR. Both take TLS too (Redis on the port after its
# own), with a certificate from a CA made here. Prints the MERCATO_TEST_* exports to eval.
#   exports=$(.ci/engines.sh DIR) && eval "$exports"     start (used by .ci/run)
#   .ci/engines.sh --stop DIR                             stop both again
set -euo pipefail
stop=false
if [ "${1:-}" = --stop ]; then stop=true; shift; fi
dir=${1:?usage: engines.sh [--stop] DIR}
pg_port=${MERCATO_CI_PG_PORT:-55432}
redis_port=${MERCATO_CI_REDIS_PORT:-56379}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# PostgreSQL refuses to run as root: its cluster belongs to the postgres user when we are root.
run_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if $stop; then
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    run_pg "$pg_bin/pg_ctl" -D "$dir/pg" stop -m fast >/dev/null 2>&1 || true
    exit 0
fi

if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing postgresql and redis-server from the OS packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q postgresql redis-server >&2 \
        || { as_root apt-get update -q >&2 && as_root apt-get install -y -q postgresql redis-server >&2; }
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

mkdir -p "$dir"
pg_user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then pg_user=postgres; chown postgres "$dir"; fi
if [ ! -f "$dir/pg/PG_VERSION" ]; then
    run_pg "$pg_bin/initdb" -D "$dir/pg" -U "$pg_user" -A trust >/dev/null
fi
# TLS beside plain connections: a CA made here signs the server's certificate (127.0.0.1 and
# localhost); a second CA, which signed nothing, lets a test see a wrong CA refused.
tls=$dir/tls
if [ ! -f "$tls/server.crt" ]; then
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=mercato-ci-engines-ca \
        -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=mercato-ci-other-ca \
        -keyout "$tls/other-ca.key" -out "$tls/other-ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
        -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/san.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 30 -extfile "$tls/san.ext" -out "$tls/server.crt" 2>/dev/null
    chmod 600 "$tls/server.key"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$tls/server.key" "$tls/server.crt"; fi
fi
run_pg "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
    -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" start >&2
run_pg "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U "$pg_user" -d postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname = 'mercato'" | grep -q 1 \
    || run_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U "$pg_user" mercato

# appendonly with fsync always: the bus on Redis Streams loses nothing it acknowledged.
# TLS on the next port, with the same certificate as PostgreSQL's.
redis_tls_port=$((redis_port + 1))
redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
    --appendonly yes --appendfsync always --save '' --logfile "$dir/redis.log" \
    --tls-port "$redis_tls_port" --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" \
    --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no >&2
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$redis_port" ping >/dev/null

echo "export MERCATO_TEST_POSTGRES=postgres://$pg_user@127.0.0.1:$pg_port/mercato"
echo "export MERCATO_TEST_POSTGRES_TLS='postgres://$pg_user@127.0.0.1:$pg_port/mercato?sslmode=verify-full&sslrootcert=$tls/ca.crt'"
echo "export MERCATO_TEST_WRONG_CA=$tls/other-ca.crt"
echo "export MERCATO_TEST_REDIS=redis://127.0.0.1:$redis_port"
echo "export MERCATO_TEST_REDIS_TLS='rediss://127.0.0.1:$redis_tls_port/?sslrootcert=$tls/ca.crt'"
