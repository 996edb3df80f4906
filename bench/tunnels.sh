#!/usr/bin/env bash
# Memory per idle tunnel (issue 6): N idle WebSockets through the fulcrum binary, over HTTP/1.1
# and over HTTP/2, with Fulcrum's resident memory before and after. Not part of CI.
#
# Usage: bench/tunnels.sh            (env: COUNT=10000 H1_COUNT=9000)
# Over HTTP/1.1 each tunnel costs Fulcrum two file descriptors (client and backend), and this
# machine's hard limit is 20000 open files per process, so the HTTP/1.1 run stops at 9000;
# over HTTP/2 many WebSockets share a client connection and 10000 fit.
# Binds 127.0.0.1 only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-10000}
H1_COUNT=${H1_COUNT:-9000}
ulimit -n "$(ulimit -Hn)"
dotnet build bench/Fulcrum.Bench.Tunnels -c Release -v quiet --nologo >/dev/null
run() { dotnet bench/Fulcrum.Bench.Tunnels/bin/Release/net10.0/Fulcrum.Bench.Tunnels.dll "$@"; }
run "$COUNT" http2
run "$H1_COUNT" http1
