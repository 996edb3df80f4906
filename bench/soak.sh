#!/usr/bin/env bash
# The soak and chaos bench (issue 20): mixed traffic through the fulcrum binary while backends die,
# drain, slow down and the configuration changes; reports every failure by kind, WebSockets lost,
# Fulcrum's memory, descriptors and threads, and p99 over time. Not part of CI.
#
# Usage: bench/soak.sh        (env: DURATION=10m (or seconds), SETTLE=55 (seconds after traffic
#                              before descriptors and threads are counted again: idle upstream
#                              connections close after 50 s), OUT=bench/results/soak-DATE.md)
# Binds 127.0.0.1 ports 19301-19306 only; stops what it starts; exits 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10m}
SETTLE=${SETTLE:-55}
case "$DURATION" in
  *m) seconds=$(( ${DURATION%m} * 60 )) ;;
  *s) seconds=${DURATION%s} ;;
  *) seconds=$DURATION ;;
esac
mkdir -p bench/results
OUT=${OUT:-bench/results/soak-$(date -u +%Y-%m-%d-%H%M).md}
dotnet build bench/Fulcrum.Bench.Soak -c Release -v quiet --nologo >/dev/null
# dotnet-gcdump (a NuGet tool) tells a leak from a heap the server GC keeps; installed here once.
tools=bench/.tools
[ -x "$tools/dotnet-gcdump" ] || dotnet tool install --tool-path "$tools" dotnet-gcdump --version 10.0.750501 >/dev/null 2>&1 || true
status=0
{
  echo "Commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' plus uncommitted changes'); \`DURATION=$DURATION bench/soak.sh\`; 2 cores shared by Fulcrum, the backends and the clients."
  echo
  gcdump=""
  [ -x "$tools/dotnet-gcdump" ] && gcdump="$PWD/$tools/dotnet-gcdump"
  dotnet bench/Fulcrum.Bench.Soak/bin/Release/net10.0/Fulcrum.Bench.Soak.dll "$seconds" "$SETTLE" $gcdump || status=$?
} | tee "$OUT"
echo "written to $OUT"
exit "$status"
