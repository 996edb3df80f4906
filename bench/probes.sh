#!/usr/bin/env bash
# What active health checks cost: Fulcrum probing N backends (default 1000) every second.
# nginx answers /health/ready on N loopback ports; Fulcrum probes each one (HTTP, keep-alive)
# and serves no traffic. Prints Fulcrum's CPU use over the measured window as a share of one core.
#
# Usage: bench/probes.sh            (env: BACKENDS=1000 INTERVAL=1s WARMUP=10 DURATION=30, in seconds)
# Installs nginx with apt-get when it is missing. Binds 127.0.0.1, ports 20000 and up.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKENDS=${BACKENDS:-1000} INTERVAL=${INTERVAL:-1s} WARMUP=${WARMUP:-10} DURATION=${DURATION:-30}
FIRST_PORT=20000
. bench/lib.sh
need_tools nginx
NGINX=$(tool_path nginx)

work=$(mktemp -d /tmp/fulcrum-probes.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building fulcrum (Release)..." >&2
dotnet publish src/Fulcrum.Cli -c Release -o "$work/fulcrum" --nologo -v quiet >/dev/null

{
  echo "worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err warn;"
  echo "worker_rlimit_nofile 8192; events { worker_connections 8192; }"
  echo "http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s; server {"
  for i in $(seq 0 $((BACKENDS - 1))); do echo "  listen 127.0.0.1:$((FIRST_PORT + i));"; done
  echo "  location / { return 200 \"ok\n\"; } } }"
} >"$work/nginx.conf"
{
  echo "listeners: [{ name: web, address: 127.0.0.1:0 }]"
  echo "routes: [{ name: all, pool: many }]"
  echo "access_log: { enabled: false }"
  echo "pools:"
  echo "  - name: many"
  echo "    health: { active: { path: /health/ready, interval: $INTERVAL } }"
  echo "    backends:"
  for i in $(seq 0 $((BACKENDS - 1))); do echo "      - 127.0.0.1:$((FIRST_PORT + i))"; done
} >"$work/fulcrum.yaml"

ulimit -n 8192 2>/dev/null || true
"$NGINX" -c "$work/nginx.conf" & pids+=($!)
sleep 1
"$work/fulcrum/fulcrum" run -c "$work/fulcrum.yaml" 2>"$work/fulcrum.err" & pids+=($!); fpid=$!
echo "warming up for ${WARMUP}s..." >&2
sleep "$WARMUP"
healthy=$(grep -c -- "-> healthy" "$work/fulcrum.err" || true)
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$fpid/stat"; }
before=$(cpu); start=$(date +%s.%N)
sleep "$DURATION"
after=$(cpu); end=$(date +%s.%N)
probes=$(awk -v n="$BACKENDS" -v s="$DURATION" -v i="${INTERVAL%s}" 'BEGIN { printf "%d", n * s / i }')
awk -v c=$((after - before)) -v t="$tick" -v s="$start" -v e="$end" -v n="$BACKENDS" -v h="$healthy" -v iv="$INTERVAL" -v p="$probes" 'BEGIN {
  secs = c / t; wall = e - s
  printf "%d backends probed every %s: %d became healthy during warm-up\n", n, iv, h
  printf "fulcrum CPU: %.2f s over %.1f s = %.1f%% of one core (about %.0f probes; %.1f us of CPU per probe)\n", secs, wall, 100 * secs / wall, p, 1e6 * secs / p
}'
