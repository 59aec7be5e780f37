#!/usr/bin/env bash
# Build every binary the project runs into .cache/bin (git-ignored), from the Go
# module proxy, pinned by the go.mod files under hack/tools/. A stamp file per
# binary records what it was built from; an unchanged pin is not rebuilt.
#   hack/install-tools.sh        everything (make tools)
#   hack/install-tools.sh demo   only what `make demo` runs (no kwok, no second kube-apiserver, no operator-sdk, no OLM)
set -euo pipefail
only=${1:-all}
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="$ROOT/.cache/bin"
mkdir -p "$BIN"
export GOFLAGS=-mod=mod CGO_ENABLED=0
# The module proxy here has no checksum database entries for some pinned
# modules; go.sum files under hack/tools/ pin the hashes instead.
export GONOSUMDB="${GONOSUMDB:-github.com/operator-framework/*}" GOFLAGS="-mod=mod"

# kube_ldflags TOOLDIR: link-time version of the k8s.io/kubernetes pinned there (else it says v0.0.0).
kube_ldflags() {
  local version minor
  version=$(awk '{for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes") {print $(i + 1); exit}}' \
    "hack/tools/$1/go.mod")
  minor=$(echo "$version" | cut -d. -f2)
  echo "-s -w -X k8s.io/component-base/version.gitVersion=$version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean"
}
KUBE_LDFLAGS=$(kube_ldflags kube)

# build NAME TOOLDIR PACKAGE [LDFLAGS]
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:--s -w}
  local stamp="$BIN/.$name.stamp" want
  want="$( (cat "hack/tools/$dir/go.mod" "hack/tools/$dir/go.sum"; echo "$ldflags") | sha256sum | cut -c1-16) $pkg ${TAGS:-} $(go env GOVERSION)"
  if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo ">> building $name ($pkg)"
  local t0=$SECONDS
  (cd "hack/tools/$dir" && go build ${TAGS:-} -trimpath -ldflags "$ldflags" -o "$BIN/$name" "$pkg")
  echo "$want" > "$stamp"
  echo "   $name built in $((SECONDS - t0))s"
}

build ansible-operator ansible-operator github.com/operator-framework/ansible-operator-plugins/cmd/ansible-operator
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver "$KUBE_LDFLAGS"
build kube-controller-manager kube k8s.io/kubernetes/cmd/kube-controller-manager "$KUBE_LDFLAGS"
build kube-scheduler kube k8s.io/kubernetes/cmd/kube-scheduler "$KUBE_LDFLAGS"
build etcd kube go.etcd.io/etcd/server/v3
build etcdctl kube go.etcd.io/etcd/etcdctl/v3
build kubectl kube k8s.io/kubernetes/cmd/kubectl "$KUBE_LDFLAGS"
# The real node (localcp/node.py) and the demo's tenant API server.
build kubelet kube k8s.io/kubernetes/cmd/kubelet "$KUBE_LDFLAGS"
build kube-proxy kube k8s.io/kubernetes/cmd/kube-proxy "$KUBE_LDFLAGS"
build sample-apiserver kube k8s.io/sample-apiserver "$KUBE_LDFLAGS"
build coredns coredns github.com/coredns/coredns
build kustomize kustomize sigs.k8s.io/kustomize/kustomize/v5
if [[ $only == all ]]; then
  # A v1.37 kube-apiserver for the tenant test of KV/RangeStream (1.37 tries it first).
  build kube-apiserver-1.37 kube137 k8s.io/kubernetes/cmd/kube-apiserver "$(kube_ldflags kube137)"
  build kwok kwok sigs.k8s.io/kwok/cmd/kwok
  # operator-sdk: the upstream build uses this tag to avoid cgo/gpgme.
  TAGS="-tags=containers_image_openpgp" build operator-sdk operator-sdk \
    github.com/operator-framework/operator-sdk/cmd/operator-sdk
  # OLM on the local cluster (localcp/olm.py, docs/olm.md): its controllers and utilities, opm, the
  # probe its catalog pods run, crane to push images, and helm to render OLM's own chart.
  olm=github.com/operator-framework/operator-lifecycle-manager
  for cmd in olm catalog package-server copy-content; do build "$cmd" olm "$olm/cmd/$cmd"; done
  build cpb olm "$olm/util/cpb"
  TAGS="-tags=json1,containers_image_openpgp" build opm olm github.com/operator-framework/operator-registry/cmd/opm
  build grpc_health_probe olm github.com/grpc-ecosystem/grpc-health-probe
  build crane olm github.com/google/go-containerregistry/cmd/crane
  build helm helm helm.sh/helm/v3/cmd/helm
  # The S3-compatible server the backup tests and benchmark store artifacts in (localcp/s3server.py).
  build versitygw versitygw github.com/versity/versitygw/cmd/versitygw
fi

# Our own tenant endpoint (guard/), pinned by guard/go.mod; rebuilt when its sources change.
build_guard() {
  local stamp="$BIN/.etcdproxy-guard.stamp" want
  want="$(cat guard/go.mod guard/go.sum guard/*.go | sha256sum | cut -c1-16) $(go env GOVERSION)"
  if [[ -x "$BIN/etcdproxy-guard" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo ">> building etcdproxy-guard (guard/)"
  (cd guard && go build -trimpath -ldflags "-s -w" -o "$BIN/etcdproxy-guard" .)
  echo "$want" > "$stamp"
}
build_guard
