#!/usr/bin/env bash
# Bytes allocated per proxied request (issue 9): Fulcrum in process, two nginx backends answering
# a 13-byte body, wrk at 64 connections; with metrics and the access log on, then off.
# Installs nginx and wrk with apt-get when missing. Binds 127.0.0.1 only; stops what it starts.
# Usage: bench/alloc.sh        (env: CONNECTIONS=64 DURATION=10; FULCRUM_ALLOC_TYPES=1 adds bytes by type)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
need_tools nginx wrk
NGINX=$(tool_path nginx)
work=$(mktemp -d /tmp/fulcrum-alloc.XXXXXX)
backends_conf "$work" 19111 19112
"$NGINX" -c "$work/backends.conf" -e "$work/backends.err" & nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null || true; wait $nginx_pid 2>/dev/null || true; rm -rf "$work"' EXIT
dotnet build bench/Fulcrum.Bench.Alloc -c Release -v quiet --nologo >/dev/null
run() { dotnet bench/Fulcrum.Bench.Alloc/bin/Release/net10.0/Fulcrum.Bench.Alloc.dll 19213 127.0.0.1:19111 127.0.0.1:19112 "${CONNECTIONS:-64}" "${DURATION:-10}" "$@"; }
run
run off
