#!/usr/bin/env bash
# Observability conformance: a live scrape of /metrics passes `promtool check metrics`, and the
# shipped alert rules pass `promtool check rules`. Installs Debian's prometheus (which has
# promtool) with apt-get when promtool is missing. Binds 127.0.0.1 only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian's prometheus package) with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool check rules deploy/prometheus/alerts.yml

work=$(mktemp -d)
dotnet build src/Fulcrum.Cli -v quiet --nologo >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
dotnet src/Fulcrum.Cli/bin/Debug/net10.0/fulcrum.dll demo --port "$port" >"$work/out" 2>"$work/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q "Ctrl-C stops" "$work/err" && break; sleep 0.2; done
admin=$(grep -o "admin: http://[0-9.:]*" "$work/err" | head -n 1 | sed 's/admin: //')
for path in / / /events /broken/ /slow?ms=5; do curl -s -m 2 "http://127.0.0.1:$port$path" >/dev/null || true; done
curl -s "$admin/metrics" >"$work/metrics"
grep -q '^fulcrum_requests_total' "$work/metrics"
promtool check metrics <"$work/metrics"
echo "promtool: 2 passed, 0 failed"
