#!/usr/bin/env bash
# Fails when a command a contributor runs would build a dependency again that the README's test
# command (`cargo test --workspace`) has already built: one feature set for every build. Run it
# after the test build (CI does). Each command below must find every dependency fresh; what it
# compiles of the workspace's own crates is fine.
#
# When it fails, a feature set has drifted: `cargo hakari generate` (cargo install
# cargo-hakari) brings workspace-hack/Cargo.toml back in line, and `cargo hakari verify` says
# whether it is.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(cargo metadata --format-version 1 --no-deps \
    | grep -o '"name":"[^"]*","version":"[^"]*","id":"path+file://[^"]*"' \
    | sed 's/"name":"\([^"]*\)".*/\1/' | sort -u)
[ -n "$packages" ] || { echo "no workspace packages found in cargo metadata" >&2; exit 2; }

checks=("build --bin mercato" "build --workspace" "build -p mercato-e2e --bin loadgen")
for p in $packages; do
    checks+=("test -p $p --no-run" "build -p $p")
done

drifted=0
for c in "${checks[@]}"; do
    # shellcheck disable=SC2086 # the check is a list of words
    rebuilt=$(cargo $c --message-format=json 2>/dev/null \
        | grep '"reason":"compiler-artifact"' \
        | grep '"fresh":false' \
        | grep -v '"package_id":"path+file://' \
        | grep -o '"package_id":"[^"]*"' | sed 's/.*#//; s/"$//' | sort -u || true)
    if [ -n "$rebuilt" ]; then
        drifted=1
        echo "cargo $c built dependencies again (features differ from the test build's):" >&2
        printf '  %s\n' $rebuilt >&2
    else
        echo "cargo $c: every dependency reused"
    fi
done
if [ "$drifted" -ne 0 ]; then
    echo "feature sets drifted: run \`cargo hakari generate\` and commit workspace-hack/Cargo.toml" >&2
    exit 1
fi
