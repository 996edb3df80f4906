#!/usr/bin/env bash
# Hot-path pieces (route match, balancer pick, header copy) timed alone with BenchmarkDotNet,
# with allocation columns. Arguments go to BenchmarkDotNet, e.g.:
#   bench/micro.sh                       # everything, default job
#   bench/micro.sh --filter '*Header*' --quick
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--filter '*')
dotnet run -c Release --project bench/Fulcrum.Bench.Micro -- --artifacts bench/results/micro "${args[@]}"
