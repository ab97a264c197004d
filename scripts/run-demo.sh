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

# start NAME ARGS...: runs `gps server NAME`, waits for its address and stores it in $work/NAME.addr.
start() {
  local name=$1; shift
  "$gps" server "$name" --port 0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 400); do
    if grep -q '^listening on ' "$work/$name.out"; then
      sed -n 's/^listening on //p' "$work/$name.out" >"$work/$name.addr"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/$name.log" >&2; echo "service $name did not start" >&2; exit 1; fi
    sleep 0.05
  done
  echo "service $name did not report its address within 20 s" >&2
  exit 1
}

start a --object-root data/objects
start b
a=$(cat "$work/a.addr")
b=$(cat "$work/b.addr")
echo "service A on $a, service B on $b"
params='{"object_storage_urls": ["a"], "dataset": "b"}'
echo "+ gps client --data-info '$params'"
"$gps" client --data-info "$params" --a "$a" --b "$b" --output json
echo "calls as the services logged them:"
grep -h -E 'call (started|finished)' "$work/a.log" "$work/b.log" | sed 's/^/  /'
