#!/usr/bin/env bash
# `make bench`: h2load (an independent HTTP/2 load generator) against A/Prepare on a tiny object,
# 4 connections x 10 streams, 10 s per run, RUNS runs (default 3); prints each run and the median.
#
# h2load counts gRPC errors as successes, so every run is checked two ways: the server's own log
# (it logs each call's status before sending the trailers) must show no status other than OK (or
# CANCELLED, for the streams h2load resets when its time is up), and
# the response DATA bytes must equal completed x the size of one successful response (an error
# answer is trailers-only, with no DATA).
set -euo pipefail
gps=${1:?usage: bench-h2load.sh PATH_TO_GPS}
runs=${RUNS:-3}
duration=${DURATION:-10s}
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/objects"
printf 'tiny object!\n' >"$work/objects/tiny"
# gRPC frame: flag 0, big-endian length, then DataInfo{object_storage_urls: ["tiny"], dataset: "bench"}.
python3 - "$work/request.bin" <<'PY'
import struct, sys
body = b"\x0a\x04tiny" + b"\x12\x05bench"
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(body)) + body)
PY

"$gps" server a --port 0 --object-root "$work/objects" >"$work/a.out" 2>"$work/a.log" &
server_pid=$!
for _ in $(seq 1 400); do grep -q '^listening on ' "$work/a.out" && break; sleep 0.05; done
address=$(sed -n 's/^listening on //p' "$work/a.out")
[ -n "$address" ] || { cat "$work/a.log" >&2; echo "service A did not start" >&2; exit 1; }
url="http://$address/gps.v1.A/Prepare"
headers=(-H 'content-type: application/grpc' -H 'te: trailers')

# One call to learn the DATA bytes of one successful response.
probe=$(h2load -n 1 -c 1 -d "$work/request.bin" "${headers[@]}" "$url")
per_response=$(sed -n 's/^traffic: .*B (\([0-9]*\)) data$/\1/p' <<<"$probe")
[ "$(grep -c 'status=OK' "$work/a.log")" -eq 1 ] || { echo "the probe call did not succeed" >&2; exit 1; }
echo "service A on $address; one successful response carries $per_response DATA bytes"

results=()
for run in $(seq 1 "$runs"); do
  out=$(h2load -c 4 -m 10 -D "$duration" -d "$work/request.bin" "${headers[@]}" "$url")
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  succeeded=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
  data=$(sed -n 's/^traffic: .*B (\([0-9]*\)) data$/\1/p' <<<"$out")
  expected=$(( succeeded * per_response ))
  # h2load resets the streams still open when its time is up; the server logs those as CANCELLED.
  cancelled=$(grep 'call finished' "$work/a.log" | grep -c 'status=CANCELLED' || true)
  not_ok=$(grep 'call finished' "$work/a.log" | grep -v 'status=OK' | grep -vc 'status=CANCELLED' || true)
  echo "run $run: $rps req/s; $succeeded responses, DATA bytes $data (expected $expected), calls failed in the server log: $not_ok (cancelled by h2load at the end so far: $cancelled)"
  [ "$data" -eq "$expected" ] && [ "$not_ok" -eq 0 ] || { echo "some responses were not successful" >&2; exit 1; }
  results+=("$rps")
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median over $runs runs: $median req/s (4 connections x 10 streams, $duration each)"
