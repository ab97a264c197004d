#!/usr/bin/env bash
# `make run`: the four-terminal workflow in one go, on the default data directory data/:
#   gps server a, gps server b, gps server start (with its scheduler), then
#   gps deployment run server-flow/MyPrefectDeployer --param data_info='{...}' --watch,
# then that run's history, then everything is stopped with SIGTERM (no process left behind).
set -euo pipefail
gps=${1:?usage: run-demo.sh PATH_TO_GPS}
data=${DATA_DIR:-data}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME ARGS...: runs `gps ARGS`, waits for its `listening on` line, stores the address.
start() {
  local name=$1; shift
  "$gps" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 600); do
    if grep -q '^listening on ' "$work/$name.out"; then
      sed -n 's/^listening on //p' "$work/$name.out" >"$work/$name.addr"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/$name.log" >&2; echo "make run: $name did not start" >&2; exit 1; fi
    sleep 0.05
  done
  echo "make run: $name did not report its address within 30 s" >&2
  exit 1
}

echo "+ gps server a --port 0 --object-root $data/objects"
start a server a --port 0 --object-root "$data/objects"
echo "+ gps server b --port 0"
start b server b --port 0
a=$(cat "$work/a.addr")
b=$(cat "$work/b.addr")
echo "+ gps server start --data-dir $data --port 0 --http-port 0 --a $a --b $b"
start server server start --data-dir "$data" --port 0 --http-port 0 --a "$a" --b "$b"
sed 's/^/  /' "$work/server.out"

params='{"object_storage_urls": ["a"], "dataset": "b"}'
echo "+ gps deployment run server-flow/MyPrefectDeployer --param data_info='$params' --watch"
status=0
"$gps" deployment run server-flow/MyPrefectDeployer --param data_info="$params" --watch --data-dir "$data" \
  | tee "$work/watch.out" || status=$?
run=$(sed -n 's/^enqueued run \([0-9a-f-]*\) .*/\1/p' "$work/watch.out")
if [ -n "$run" ]; then
  echo "+ gps history replay --run $run"
  "$gps" history replay --run "$run" --data-dir "$data"
fi

echo "stopping the server, B and A (SIGTERM)"
for index in 2 1 0; do
  kill -TERM "${pids[$index]}" 2>/dev/null || true
  wait "${pids[$index]}" || { echo "make run: a process did not exit cleanly" >&2; status=1; }
done
pids=()
tail -n 3 "$work/server.log" | sed 's/^/  /'
exit "$status"
