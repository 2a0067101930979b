#!/usr/bin/env bash
# Build a real Kubernetes control plane for the tests: kube-apiserver,
# kube-controller-manager, kube-scheduler and etcd, compiled from the upstream
# Go modules pinned in hack/kube/go.mod (+ go.sum).
#
# The binaries go to a cache keyed by the Kubernetes version:
#   ${MODELFERRY_KUBE_CACHE:-$HOME/.cache/modelferry/kube}/<k8s-version>/bin/
# Idempotent: if all four binaries are already there nothing is built (Go is
# then not even needed). Each binary is built under a temporary name and
# renamed into place, so an interrupted build never leaves a half binary.
# The last line printed on stdout is always the bin directory (progress goes to
# stderr), so callers can do:  BIN=$(hack/kube/build.sh | tail -n1)
#
# Environment:
#   MODELFERRY_KUBE_CACHE  cache root (default: $HOME/.cache/modelferry/kube)
#   GOTOOLCHAIN            default "local": use the installed Go (>= 1.25)
#   GOMODCACHE, GOCACHE, GOPROXY, ...  honoured as usual by the go command
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "hack/kube/build.sh: error: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

# Versions come from go.mod so there is exactly one place to bump them.
mod_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$here/go.mod"
}
k8s_version="$(mod_version k8s.io/kubernetes)"
etcd_version="$(mod_version go.etcd.io/etcd/server/v3)"
[[ -n "$k8s_version" ]] || die "cannot find k8s.io/kubernetes in $here/go.mod"
[[ -n "$etcd_version" ]] || die "cannot find go.etcd.io/etcd/server/v3 in $here/go.mod"

cache_root="${MODELFERRY_KUBE_CACHE:-${HOME:?HOME is not set}/.cache/modelferry/kube}"
bin_dir="$cache_root/$k8s_version/bin"

# name=package; built in this order (kube-apiserver first: it compiles most of
# what the others share, so the later builds mostly reuse the build cache).
targets=(
  "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
  "kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
  "etcd=go.etcd.io/etcd/server/v3"
)

missing() {
  local t
  for t in "${targets[@]}"; do
    [[ -x "$bin_dir/${t%%=*}" ]] || echo "${t%%=*}"
  done
}

if [[ -z "$(missing)" ]]; then
  say "kubernetes $k8s_version + etcd $etcd_version: all binaries present, nothing to do"
  echo "$bin_dir"
  exit 0
fi

# --- a build is needed from here on ---------------------------------------
command -v go >/dev/null 2>&1 ||
  die "Go is not installed (or not on PATH); it is needed once to build the Kubernetes test binaries into $bin_dir. Install Go >= 1.25 from https://go.dev/dl/"

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=0 # static binaries, like upstream release builds; no C compiler needed

go_version="$(go env GOVERSION 2>/dev/null)" || die "'go env GOVERSION' failed; is Go installed correctly?"
if [[ "$GOTOOLCHAIN" == local && "$go_version" =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] < 25)); then
  die "$go_version is too old: kubernetes $k8s_version needs Go >= 1.25 (or set GOTOOLCHAIN=auto to let go download one)"
fi

mkdir -p "$bin_dir"

# Serialise concurrent runs (e.g. two test sessions starting at once); the
# second one waits and then finds the binaries present.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/$k8s_version/.build.lock"
  flock 9
fi

tmp_files=()
cleanup() { ((${#tmp_files[@]})) && rm -f "${tmp_files[@]}"; return 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Same version stamping as upstream's hack/lib/version.sh (minus git commit and
# build date, which a module download does not carry; this keeps the binaries
# reproducible).
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
major="${k8s_version#v}"; major="${major%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
done

# go.sum is committed: keep the default -mod=readonly so a build can never
# silently change the pinned dependency set.
cd "$here"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

total_start="$(now)"
say "kubernetes $k8s_version + etcd $etcd_version ($go_version) -> $bin_dir"
say "missing: $(missing | tr '\n' ' ')"

start="$(now)"
pkgs=()
for t in "${targets[@]}"; do pkgs+=("${t#*=}"); done
printf '  %-24s ' "modules" >&2
log="$bin_dir/.modules.log.$$"
tmp_files+=("$log")
# Downloads what is missing from the module cache (checked against go.sum);
# the per-module "go: downloading" chatter is only shown if this fails.
if ! go list -deps "${pkgs[@]}" >/dev/null 2>"$log"; then
  say "FAILED"
  tail -n 30 "$log" >&2
  die "downloading the Go modules failed (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
fi
say "ok  $(elapsed "$start")"

for t in "${targets[@]}"; do
  name="${t%%=*}" pkg="${t#*=}"
  if [[ -x "$bin_dir/$name" ]]; then
    printf '  %-24s present\n' "$name" >&2
    continue
  fi
  tmp="$bin_dir/.$name.tmp.$$"
  tmp_files+=("$tmp")
  start="$(now)"
  printf '  %-24s ' "$name" >&2
  if ! go build -trimpath -ldflags="$ldflags" -o "$tmp" "$pkg"; then
    say "FAILED"
    die "go build of $name ($pkg) failed; see the compiler output above"
  fi
  mv -f "$tmp" "$bin_dir/$name"
  say "ok  $(elapsed "$start")  $(du -h "$bin_dir/$name" | cut -f1)"
done

say "built in $(elapsed "$total_start")"
echo "$bin_dir"
