#!/usr/bin/env bash
# Measures the development loop and prints a table (`just devloop`):
#   - the README's test command, cold (only when TARGET_DIR is empty or absent), then its run
#     command after it (what `cargo run -- up` builds once the tests are built);
#   - a one-line change in core/src/domain, then one in gateway/src, each followed by
#     (a) that crate's own tests and (b) every test (build, then run).
# Each change measure is repeated RUNS times (default 3) and its median printed: every edit
# is a new line of code (an unnamed const with a new value), and the files are put back as
# they were at the end, whatever happens.
#
#   scripts/devloop.sh [TARGET_DIR] [RUNS]
#   scripts/devloop.sh /tmp/devloop-cold 3      # a fresh clone's figures, cold build included
#   scripts/devloop.sh                          # cargo's own target directory, warm
#
# The test runs need nothing but Rust: without MERCATO_TEST_* variables the real-engine tests
# say they are skipped. Figures are wall-clock seconds on whatever else the machine is doing:
# compare figures taken in one sitting.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${1:-}
runs=${2:-3}
if [ -z "$target_dir" ]; then
    target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
case $runs in '' | *[!0-9]* | 0) echo "RUNS must be a positive number, not '$runs'" >&2; exit 2 ;; esac
export CARGO_TARGET_DIR=$target_dir
log=$(mktemp /tmp/mercato-devloop.XXXXXX)
echo "target directory: $target_dir; $runs run(s) per change; cargo's output: $log" >&2

edits=(core/src/domain/holds.rs gateway/src/routes/holds.rs)
backup=$(mktemp -d /tmp/mercato-devloop-src.XXXXXX)
for f in "${edits[@]}"; do cp -p "$f" "$backup/$(echo "$f" | tr / _)"; done
restore() {
    for f in "${edits[@]}"; do cp -p "$backup/$(echo "$f" | tr / _)" "$f"; done
    rm -rf "$backup"
}
trap restore EXIT

rows=()
# Seconds taken by a command, its output in the log; a failing command stops the measure.
timed() {
    local start end
    start=$(date +%s.%N)
    if ! "$@" >>"$log" 2>&1; then
        echo "failed: $* (see $log)" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
fmt() { awk -v s="$1" 'BEGIN {m = int(s / 60); if (m > 0) printf "%d min %.0f s", m, s - 60 * m; else printf "%.1f s", s}'; }
row() { rows+=("| $1 | $(fmt "$2") |"); echo "$1: $(fmt "$2")" >&2; }

probe=0
# One changed line: a new unnamed const at the end of the file, a value never used before.
edit() {
    probe=$((probe + 1))
    cp -p "$backup/$(echo "$1" | tr / _)" "$1"
    printf '\nconst _: u64 = %d;\n' "$(($(date +%s%N) + probe))" >>"$1"
}

if [ ! -d "$target_dir" ] || [ -z "$(ls -A "$target_dir" 2>/dev/null)" ]; then
    cargo fetch >>"$log" 2>&1  # downloads are not the build's: a fresh machine has them once
    row "README's test command, cold: build" "$(timed cargo test --workspace --no-run)"
    row "README's test command: tests run" "$(timed cargo test --workspace)"
    row "then the run command (\`cargo run -- up\`'s build)" "$(timed cargo build --bin mercato)"
else
    echo "warm target directory: the cold build is not measured (name an empty folder for it)" >&2
    cargo test --workspace --no-run >>"$log" 2>&1
    cargo build --bin mercato >>"$log" 2>&1
fi

for spec in "core/src/domain/holds.rs mercato-core" "gateway/src/routes/holds.rs mercato-gateway"; do
    read -r file crate <<<"$spec"
    own=() build=() run=() total=()
    for ((i = 0; i < runs; i++)); do
        edit "$file"
        own+=("$(timed cargo test -p "$crate")")
        edit "$file"
        b=$(timed cargo test --workspace --no-run)
        r=$(timed cargo test --workspace)
        build+=("$b") run+=("$r") total+=("$(awk -v a="$b" -v b="$r" 'BEGIN {printf "%.1f", a + b}')")
    done
    row "one line in \`$file\`: $crate's tests built and run" "$(median "${own[@]}")"
    row "one line in \`$file\`: every test binary rebuilt" "$(median "${build[@]}")"
    row "one line in \`$file\`: every test built and run" "$(median "${total[@]}")"
done

echo
echo "| Measure (median of $runs where repeated) | Time |"
echo "|---|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "$(nproc) cores; $(cargo --version); target directory $target_dir"
