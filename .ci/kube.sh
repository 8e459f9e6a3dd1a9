#!/usr/bin/env bash
# A real Kubernetes API server for the operator's suite: kube-apiserver and
# kube-controller-manager built from Debian's kubernetes source package (1.20, with vendor/)
# by Debian's Go, once, into a cache folder outside the clone; Debian's etcd beside them.
# Nothing of Kubernetes is committed: this script is the recipe.
#   .ci/kube.sh --build                          build into the cache unless already there
#   exports=$(.ci/kube.sh DIR) && eval "$exports" start etcd + API server + controller manager
#                                                 with their data, certificates and logs under DIR
#   .ci/kube.sh --stop DIR                        stop them again
# The admin authenticates with a static token (system:masters); ServiceAccounts get real
# tokens from the API server (TokenRequest), signed by a key made here, so a test can run the
# operator as the chart's ServiceAccount with exactly the rights the chart's Role grants.
set -euo pipefail

deb_version=1.20.5+really1.20.2-1.1+deb12u1
# Kubernetes 1.20 vendors reflect2 1.0.1 and json-iterator 1.1.10, which crash the API server
# (SIGSEGV iterating a map) when built by Go 1.18 or later, and Debian's Go is 1.19: the
# build takes both from Debian's own Go packages instead, at the versions that fixed it.
go_fixes=(golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
cache=${MERCATO_KUBE_CACHE:-/var/cache/mercato/kubernetes-$deb_version+reflect2-1.0.2}
etcd_port=${MERCATO_CI_ETCD_PORT:-52379}
api_port=${MERCATO_CI_KUBE_PORT:-56443}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "kube.sh: $*" >&2; }

install_packages() {
    local missing=()
    command -v go >/dev/null || missing+=(golang-go)
    command -v rsync >/dev/null || missing+=(rsync)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
    for package in "${go_fixes[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} from the OS packages"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q "${missing[@]}" >&2 \
        || { as_root apt-get update -q >&2 && as_root apt-get install -y -q "${missing[@]}" >&2; }
}

build() {
    if [ -x "$cache/bin/kube-apiserver" ] && [ -x "$cache/bin/kube-controller-manager" ] \
        && [ -x "$cache/bin/kubectl" ]; then
        return 0
    fi
    install_packages
    # The source package needs a deb-src line; Debian's images ship only binary ones.
    if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: $deb_version"; then
        say "adding a deb-src line for bookworm to fetch the kubernetes source package"
        as_root tee /etc/apt/sources.list.d/mercato-kubernetes-src.sources >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        as_root apt-get update -q >&2
    fi
    local work
    work=$(mktemp -d "${cache%/*}/kubernetes-build.XXXXXX")
    say "building kube-apiserver, kube-controller-manager and kubectl $deb_version in $work (takes a while on 2 cores)"
    (
        cd "$work"
        apt-get source -q "kubernetes=$deb_version" >&2
        cd kubernetes-*/
        # GOPATH mode, as debian/rules builds it.
        export GOPATH=$PWD/.go CGO_ENABLED=0 HOME=$work
        mkdir -p .go/src/k8s.io
        ln -sfn ../../.. .go/src/k8s.io/kubernetes
        for module in github.com/modern-go/reflect2 github.com/json-iterator/go; do
            rm -rf "vendor/$module"
            cp -rL "/usr/share/gocode/src/$module" "vendor/$module"
        done
        make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl" >&2
        mkdir -p "$cache.tmp/bin"
        cp _output/bin/kube-apiserver _output/bin/kube-controller-manager _output/bin/kubectl \
            "$cache.tmp/bin/"
    )
    rm -rf "$cache"
    mv "$cache.tmp" "$cache"
    rm -rf "$work"
    say "built into $cache/bin"
}

wait_for() { # seconds, description, command...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    say "$what did not come up in ${seconds}s"
    return 1
}

stop() {
    local dir=$1
    for name in kube-controller-manager kube-apiserver etcd; do
        if [ -f "$dir/$name.pid" ]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
            rm -f "$dir/$name.pid"
        fi
    done
}

kubeconfig() { # file, user, token
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ci
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dir/pki/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: ci
  context: {cluster: ci, user: $2}
current-context: ci
EOF
}

start() {
    dir=$(mkdir -p "$1" && cd "$1" && pwd)
    build
    install_packages
    stop "$dir"
    mkdir -p "$dir/pki"
    local pki=$dir/pki
    if [ ! -f "$pki/apiserver.crt" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=mercato-ci-ca \
            -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
            -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n' \
            >"$pki/san.ext"
        openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
            -CAcreateserial -days 30 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
        openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
        openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
        local admin
        admin=$(openssl rand -hex 16)
        echo "$admin,admin,admin,\"system:masters\"" >"$pki/tokens.csv"
        kubeconfig "$dir/admin.kubeconfig" admin "$admin"
    fi

    etcd --name ci --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
        --initial-cluster "ci=http://127.0.0.1:$((etcd_port + 1))" \
        --unsafe-no-fsync >"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    wait_for 30 etcd curl -sf "http://127.0.0.1:$etcd_port/health"

    "$cache/bin/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
        --insecure-port 0 \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --token-auth-file "$pki/tokens.csv" \
        --authorization-mode RBAC \
        --service-account-key-file "$pki/sa.pub" \
        --service-account-signing-key-file "$pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --service-cluster-ip-range 10.0.0.0/24 \
        --allow-privileged \
        --cert-dir "$pki" >"$dir/kube-apiserver.log" 2>&1 &
    echo $! >"$dir/kube-apiserver.pid"
    wait_for 90 kube-apiserver "$cache/bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" \
        get --raw /readyz

    "$cache/bin/kube-controller-manager" \
        --kubeconfig "$dir/admin.kubeconfig" \
        --authentication-kubeconfig "$dir/admin.kubeconfig" \
        --authorization-kubeconfig "$dir/admin.kubeconfig" \
        --service-account-private-key-file "$pki/sa.key" \
        --root-ca-file "$pki/ca.crt" \
        --leader-elect=false --port 0 --secure-port 0 \
        --controllers '*' >"$dir/kube-controller-manager.log" 2>&1 &
    echo $! >"$dir/kube-controller-manager.pid"

    echo "export MERCATO_TEST_KUBE_ADMIN=$dir/admin.kubeconfig"
    echo "export MERCATO_TEST_KUBECTL=$cache/bin/kubectl"
}

case "${1:-}" in
--build) build ;;
--stop) stop "${2:?usage: kube.sh --stop DIR}" ;;
"" | -*) echo "usage: kube.sh --build | DIR | --stop DIR" >&2; exit 2 ;;
*) start "$1" ;;
esac
