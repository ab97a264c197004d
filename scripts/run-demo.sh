#!/usr/bin/env bash
# `make run`: starts services A and B on free ports, calls them like the Prefect snippet's client
# with data_info = {"object_storage_urls": ["a"], "dataset": "b"}, then stops them.
set -euo pipefail
gps=${1:?usage: run-demo.sh PATH_TO_GPS}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start() { # NAME ARGS... ; prints the bound address
  local name=$1; shift
  "$gps" server "$name" --port 0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    if grep -q '^listening on ' "$work/$name.out"; then sed -n 's/^listening on //p' "$work/$name.out"; return; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then cat "$work/$name.log" >&2; echo "service $name did not start" >&2; exit 1; fi
    sleep 0.05
  done
  echo "service $name did not report its address" >&2; exit 1
}

a=$(start a --object-root data/objects)
b=$(start b)
echo "service A on $a, service B on $b"
params='{"object_storage_urls": ["a"], "dataset": "b"}'
echo "+ gps client --data-info '$params'"
"$gps" client --data-info "$params" --a "$a" --b "$b" --output json
echo "service logs:"
show_calls() { cat "$work/a.log" "$work/b.log" | grep -E 'call (started|finished)' | sed 's/^/  /'; }
show_calls
