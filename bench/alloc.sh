#!/usr/bin/env bash
# Bytes allocated per proxied request (issue 9): Fulcrum in process, two nginx backends answering
# a 13-byte body, wrk at 64 connections; with metrics and the access log on, then off.
# Installs nginx and wrk with apt-get when missing. Binds 127.0.0.1 only; stops what it starts.
# Usage: bench/alloc.sh        (env: CONNECTIONS=64 DURATION=10; FULCRUM_ALLOC_TYPES=1 adds bytes by type)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
work=$(mktemp -d /tmp/fulcrum-alloc.XXXXXX)
cat >"$work/backends.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/backends.pid;
error_log $work/backends.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19111; location / { return 200 "hello world!\n"; } }
  server { listen 127.0.0.1:19112; location / { return 200 "hello world!\n"; } }
}
CONF
"$NGINX" -c "$work/backends.conf" -e "$work/backends.err" & nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null || true; wait $nginx_pid 2>/dev/null || true; rm -rf "$work"' EXIT
dotnet build bench/Fulcrum.Bench.Alloc -c Release -v quiet --nologo >/dev/null
run() { dotnet bench/Fulcrum.Bench.Alloc/bin/Release/net10.0/Fulcrum.Bench.Alloc.dll 19213 127.0.0.1:19111 127.0.0.1:19112 "${CONNECTIONS:-64}" "${DURATION:-10}" "$@"; }
run
run off
