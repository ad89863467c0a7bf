#!/usr/bin/env bash
# HTTP end to end, for context: req/s of each variant under `wrk`, round-robin.
#
#   benchmarks/bench_wrk.sh                      # A B C D A B C D, 10 s each
#   ROUNDS=3 DURATION=15s benchmarks/bench_wrk.sh
#   VARIANTS="nexus_off nexus_on" benchmarks/bench_wrk.sh
#
# Variants are the apps of bench_monitoring_overhead.py (served by its wrk_app factory):
#   none | ours | instrumentator | starlette_exporter   bare FastAPI app, trivial predict route
#   nexus_off | nexus_on                                 the real service, monitoring off/on
# Each run starts a fresh uvicorn (1 worker, loopback, no access log), waits until the
# route answers 200, runs `wrk -t1 -c16` with a Lua script POSTing one JSON instance,
# then stops the server. Rotating A,B,C,D,A,B,C,D spreads machine noise over all variants;
# on 2 cores wrk and the server share the machine, so compare ratios, not absolutes.
# Bounded: every step has a timeout; the whole run is ROUNDS x variants x (DURATION + ~10 s).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
VARIANTS=${VARIANTS:-"none ours instrumentator starlette_exporter"}
KEY="predict-key-0123456789abcdef"  # the bench apps' own key (bench_monitoring_overhead.KEY)
PATH_PREDICT="/api/v1/models/diagnostic/predict"

command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)" >&2; exit 2; }
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# One instance of the bundled diagnostic dataset, as the request body.
BODY=$("$PY" -c 'import sys; sys.path.insert(0, "benchmarks"); import bench_monitoring_overhead as b; print(b.request_body().decode())')
cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = [[$BODY]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
EOF
case " $VARIANTS " in
  *" nexus_"*) "$PY" -c "from nexus_ml.ml.sources import ensure_bundled_models as e; e('$WORK/models')" ;;
esac

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_one() {  # variant -> prints req/s (and non-2xx count) on stdout
  local variant=$1 port
  port=$(free_port)
  NEXUS_BENCH_VARIANT=$variant NEXUS_BENCH_DIR=$WORK "$PY" -m uvicorn --factory \
    --app-dir benchmarks bench_monitoring_overhead:wrk_app --host 127.0.0.1 --port "$port" \
    --workers 1 --no-access-log --log-level warning >"$WORK/$variant.log" 2>&1 &
  SERVER_PID=$!
  local url="http://127.0.0.1:$port$PATH_PREDICT" ok=""
  for _ in $(seq 1 120); do  # up to 60 s (the service variants load models first)
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Content-Type: application/json" \
      -H "Authorization: Bearer $KEY" --data "$BODY" "$url" || true)
    if [ "$code" = "200" ]; then ok=1; break; fi
    sleep 0.5
  done
  if [ -z "$ok" ]; then echo "variant $variant did not start:" >&2; cat "$WORK/$variant.log" >&2; exit 1; fi
  local out
  out=$(timeout 120 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --timeout 5s -s "$WORK/post.lua" "$url")
  kill -INT "$SERVER_PID"; timeout 30 tail --pid="$SERVER_PID" -f /dev/null || kill -9 "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  local rps bad
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$rps ${bad:-0}"
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do
    read -r rps bad < <(run_one "$v")
    echo "round $round  $v  $rps req/s  non-2xx=$bad" >&2
    RESULTS[$v]="${RESULTS[$v]:-} $rps"
    [ "$bad" = "0" ] || { echo "variant $v answered $bad non-2xx responses" >&2; exit 1; }
  done
done

echo
echo "wrk -t1 -c$CONNECTIONS -d$DURATION, uvicorn 1 worker, $ROUNDS rounds round-robin"
echo
echo "| variant | req/s per round | median req/s | vs first |"
echo "|---|---|---:|---:|"
first=""
for v in $VARIANTS; do
  med=$(tr ' ' '\n' <<<"${RESULTS[$v]}" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  [ -n "$first" ] || first=$med
  ratio=$(awk -v a="$med" -v b="$first" 'BEGIN {printf "%.2f", a/b}')
  echo "| $v |${RESULTS[$v]} | $med | $ratio |"
done
