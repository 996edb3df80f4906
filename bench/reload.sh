#!/usr/bin/env bash
# Reload apply time (issue 8): a configuration of 100 pools x 10 backends reloaded 200 times with
# a few changes each, in process (the first few dozen include JIT warm-up), then 10 times
# through the file watcher. Not part of CI.
# Usage: bench/reload.sh [POOLS BACKENDS RELOADS]     (default: 100 10 200)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then set -- 100 10 200; fi
dotnet build bench/Fulcrum.Bench.Reload -c Release -v quiet --nologo >/dev/null
dotnet bench/Fulcrum.Bench.Reload/bin/Release/net10.0/Fulcrum.Bench.Reload.dll "$@"
