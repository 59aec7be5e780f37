#!/usr/bin/env bash
# Run a command inside the project's own network namespace: loopback only, no route out of the
# machine (docs/node.md, "Network containment"). Everything the harness starts (control plane,
# real node, operator, tests) runs in one, so a mistake fails with "network unreachable" instead of
# sending a packet anywhere. One namespace per KEY (demo, test) and per checkout.
#   hack/in-netns.sh KEY CMD...          run CMD inside epo-KEY-<checkout hash> (created if missing)
#   hack/in-netns.sh --once KEY CMD...   the same, then remove the namespace (CMD's exit code is kept)
#   hack/in-netns.sh --delete KEY        stop whatever still runs in it and remove it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
delete=false once=false
case ${1:-} in
  --delete) delete=true; shift ;;
  --once) once=true; shift ;;
esac
key=${1:?usage: in-netns.sh [--once|--delete] KEY [CMD...]}; shift
name="epo-$key-$(printf %s "$root" | sha256sum | cut -c1-8)"
if $delete; then
  [[ -e /run/netns/$name ]] || exit 0
  pids=$(ip netns pids "$name" || true)
  [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
  exec ip netns delete "$name"
fi
# Already inside a namespace of ours (a nested make target): run as is.
if [[ -n ${ETCDPROXY_NETNS:-} ]]; then exec "$@"; fi
if [[ ! -e /run/netns/$name ]]; then
  ip netns add "$name"
  ip -n "$name" link set lo up
fi
if $once; then
  rc=0
  nsenter --net="/run/netns/$name" env ETCDPROXY_NETNS="$name" "$@" || rc=$?
  "$0" --delete "$key"
  exit $rc
fi
exec nsenter --net="/run/netns/$name" env ETCDPROXY_NETNS="$name" "$@"
