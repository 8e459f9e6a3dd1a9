# Everyday recipes; each is a thin call to cargo, never the only way.

# Run the whole platform in one process with the examples.
dev:
    cargo run -- up

# Every test (the README's test command).
test:
    cargo test --workspace

# The load benchmarks (on-sale, catalog, commerce; in one process) and the criterion benches.
bench:
    cargo run --profile dist -p mercato-e2e --bin loadgen -- onsale --buyers 400 --runs 3
    cargo run --profile dist -p mercato-e2e --bin loadgen -- catalog --products 1000000 --clients 12 --runs 3
    cargo run --profile dist -p mercato-e2e --bin loadgen -- commerce --clients 200 --orders 20000 --runs 3
    cargo bench -p mercato-core --bench engines
    cargo bench -p mercato-core --bench allocation
    cargo bench -p mercato-search

# The on-sale benchmark with Mercato split into processes on PostgreSQL and Redis.
bench-multiprocess:
    e2e/onsale-multiprocess.sh --buyers 400 --runs 3

# Rewrite the committed CRD YAML (crds/generated/, charts/mercato/crds/) from the types.
crds:
    MERCATO_BLESS=1 cargo test -p mercato-crds --test generated

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The development loop's figures (cold build, one-line changes): `just devloop /tmp/empty-dir 3`.
devloop target_dir="" runs="3":
    scripts/devloop.sh {{target_dir}} {{runs}}

# A real Kubernetes API server for the operator's real-cluster test (built once, then cached):
# `eval "$(just kube)"` starts it and sets MERCATO_TEST_KUBE_ADMIN and MERCATO_TEST_KUBECTL.
kube dir="/tmp/mercato-kube":
    @.ci/kube.sh {{dir}}

# The container image (Docker with BuildKit), tagged with the workspace's version:
# `just image` or `just image ghcr.io/you/mercato`.
image repository="ghcr.io/mercato-dev/mercato":
    DOCKER_BUILDKIT=1 docker build -t {{repository}}:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) .
