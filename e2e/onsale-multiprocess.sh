#!/usr/bin/env bash
# The on-sale benchmark with Mercato split into processes on PostgreSQL and Redis:
# one gateway, HOLDS holds workers and one payments worker, each a `mercato` process, and the
# load generator in its own. Starts a private PostgreSQL and Redis with .ci/engines.sh (they
# are stopped at the end). Extra arguments go to `loadgen onsale`. BUS and STORE put the bus
# or the store on another engine (Fluvio, ScyllaDB) that is already running.
#   e2e/onsale-multiprocess.sh --buyers 400 --runs 3
set -euo pipefail
cd "$(dirname "$0")/.."
holds=${HOLDS:-2}
work=$(mktemp -d /tmp/mercato-onsale-mp.XXXXXX)
# Published figures are taken in the dist profile (PROFILE=dev for a quick look). The binaries
# are where cargo puts them: its target directory may be a cache folder outside the clone.
profile=${PROFILE:-dist}
cargo build --profile "$profile" -p mercato -p mercato-e2e --bins >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out=$target_dir/$([ "$profile" = dev ] && echo debug || echo "$profile")

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    .ci/engines.sh --stop "$work/engines"
}
trap cleanup EXIT
chmod 755 "$work"  # the PostgreSQL server runs as its own user
exports=$(.ci/engines.sh "$work/engines")
eval "$exports"
# BUS=fluvio://SC:9003 or STORE=scylla://HOST/KEYSPACE runs the same benchmark on those engines.
export MERCATO_BUS=${BUS:-$MERCATO_TEST_REDIS} MERCATO_COORD=$MERCATO_TEST_REDIS
export MERCATO_STORE=${STORE:-$MERCATO_TEST_POSTGRES}
export RUST_LOG=${RUST_LOG:-warn}

bin=$out/mercato
# Every process of the installation signs and verifies with the same secrets, from files.
$bin secrets init "$work/secrets" >/dev/null
export MERCATO_SESSION_KEYS_DIR=$work/secrets/session-keys
export MERCATO_WEBHOOK_SECRET_FILE=$work/secrets/webhook-secret
$bin gateway --listen 127.0.0.1:18080 --accept-manifests --admin-token-file "$work/token" >"$work/gateway.log" 2>&1 &
pids+=($!)
until grep -q "listening on" "$work/gateway.log"; do
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/gateway.log" >&2; exit 1; }
    sleep 0.2
done
for ((i = 0; i < holds; i++)); do
    $bin worker holds --replica "$i" --replicas "$holds" >"$work/holds-$i.log" 2>&1 &
    pids+=($!)
done
$bin worker payments --webhook-url http://127.0.0.1:18080/api/v1/payments/webhook \
    >"$work/payments.log" 2>&1 &
pids+=($!)
sleep 1
echo "gateway, $holds holds workers and a payments worker on $MERCATO_STORE and $MERCATO_BUS" >&2
"$out/loadgen" onsale --url http://127.0.0.1:18080 --token "$(cat "$work/token")" "$@"
