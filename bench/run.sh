#!/usr/bin/env bash
# Fulcrum against nginx, HAProxy and YARP on this machine, in interleaved runs.
#
# Two nginx backends answer a 13-byte body. Each load balancer balances round robin over them
# with upstream keep-alive and no access log: nginx with one worker, HAProxy with one thread,
# Fulcrum with the .NET runtime's defaults and metrics off. "fulcrum-observed" is the same
# Fulcrum with metrics and a JSON access log to a file on, to show what observability costs. All share the machine with wrk and the backends;
# CPU seconds per 100k requests is the column that compares efficiency.
#
# PIN=1 pins the balancer under test to core 1 and wrk and the backends to core 0. .NET does
# poorly there: a proxied request crosses several threads, and on one core each crossing is a
# context switch (measured: about a quarter of its unpinned throughput), so it is not the default.
#
# Usage: bench/run.sh                 (env: ROUNDS=3 DURATION=10s CONNECTIONS="64 256" PIN=0
#                                      TARGETS="fulcrum fulcrum-observed nginx haproxy yarp"
#                                      (yarp: bench/Fulcrum.Bench.Yarp, a minimal YARP 2.3.0 proxy,
#                                      round robin over the same backends, its defaults, no logging)
#                                      ALT_ENV="DOTNET_gcServer=0": adds target fulcrum-alt, the plain
#                                      Fulcrum run with those environment variables, to compare a
#                                      runtime setting against the default in the same run;
#                                      ALT_LISTENER="server: kestrel": the same, for a fulcrum-alt
#                                      whose listener has those keys (Kestrel's HTTP/1.1 against
#                                      Fulcrum's own front end, say);
#                                      ALT_PUBLISH="-p:PublishReadyToRun=true -r linux-x64": the
#                                      same, for a fulcrum-alt published with those options;
#                                      CEILING=1: adds target "ceiling", bench/Fulcrum.Bench.Ceiling,
#                                      Kestrel plus a bare HTTP/1.1 client on Pipelines (not a
#                                      proxy: GET only, no features), what a dedicated upstream
#                                      pool could reach at most;
#                                      NOTE="what changed": a line under the dated heading;
#                                      for a few-per-cent question: TARGETS= the two compared,
#                                      FRESH=1 SLICES=4 DURATION=5s ROUNDS=8, and read the paired
#                                      table's 95% interval (ALT_ENV="FULCRUM_AA_PROBE=1", a
#                                      no-op, compares two identical Fulcrums);
#                                      FRESH=1: each round starts the Fulcrum targets afresh and
#                                      warms each (WARM=10s) before measuring, so the medians also
#                                      average over what differs between processes; WARM= the
#                                      warm-up before measuring (3s without FRESH);
#                                      SLICES=4: each round measures each target SLICES times,
#                                      alternating, DURATION each; the paired ratio then compares
#                                      readings seconds apart, not minutes;
#                                      each run's report is saved in bench/results/DATE-COMMIT.md;
#                                      DOC=FILE also appends it to FILE)
# Installs nginx, haproxy and wrk with apt-get when they are missing. Binds 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-"64 256"}
B1=19101 B2=19102 P_NGINX=19201 P_HAPROXY=19202 P_FULCRUM=19203 P_OBSERVED=19204 P_ALT=19205 P_CEILING=19206 P_YARP=19207

# shellcheck source=bench/lib.sh
. bench/lib.sh
need_tools nginx haproxy wrk
NGINX=$(tool_path nginx)
HAPROXY=$(tool_path haproxy)

# The run's folder and the processes it starts ("pids+=($!)"), both gone when it exits.
bench_workdir fulcrum-bench

if [ "${PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then LB_CPU="taskset -c 1"; LOAD_CPU="taskset -c 0"; PINNED="balancer pinned to core 1, wrk and backends to core 0"
else LB_CPU=""; LOAD_CPU=""; PINNED="nothing pinned; nginx 1 worker, HAProxy 1 thread, Fulcrum runtime defaults"; fi

echo "building fulcrum (Release)..." >&2
dotnet publish src/Fulcrum.Cli -c Release -o "$work/fulcrum" --nologo -v quiet >/dev/null
echo "building the YARP peer (Release)..." >&2
dotnet publish bench/Fulcrum.Bench.Yarp -c Release -o "$work/yarp" --nologo -v quiet >/dev/null
alt_bin="$work/fulcrum/fulcrum"
if [ -n "${ALT_PUBLISH:-}" ]; then
  echo "building fulcrum-alt ($ALT_PUBLISH)..." >&2
  # shellcheck disable=SC2086
  dotnet publish src/Fulcrum.Cli -c Release $ALT_PUBLISH -o "$work/fulcrum-alt" --nologo -v quiet >/dev/null
  alt_bin="$work/fulcrum-alt/fulcrum"
fi

backends_conf "$work" "$B1" "$B2"
nginx_conf "$work" nginx "  upstream backends { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 256; }
  server {
    listen 127.0.0.1:$P_NGINX;
    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
cat >"$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend web
  bind 127.0.0.1:$P_HAPROXY
  default_backend backends
backend backends
  balance roundrobin
  server b1 127.0.0.1:$B1
  server b2 127.0.0.1:$B2
CONF
# fulcrum_yaml PORT LINES: the balancer Fulcrum runs as, with LINES (access log and metrics) added.
fulcrum_yaml() {
  cat <<CONF
listeners: [{ name: web, address: 127.0.0.1:$1 }]
routes: [{ name: all, pool: backends }]
pools:
  - name: backends
    balancing: round_robin
    backends: [127.0.0.1:$B1, 127.0.0.1:$B2]
$2
CONF
}
fulcrum_yaml "$P_FULCRUM" $'access_log: { enabled: false }\nmetrics: { enabled: false }' >"$work/fulcrum.yaml"
# The same with metrics and a JSON access log to a file on: what observability costs. The log is
# in a folder of its own: every Fulcrum watches the folder of its configuration, and each of the
# log's writes there would wake all of their watchers.
mkdir "$work/log"
log="$work/log/access.log"
fulcrum_yaml "$P_OBSERVED" "access_log: { path: $log }" >"$work/fulcrum-observed.yaml"

$LOAD_CPU "$NGINX" -c "$work/backends.conf" -e "$work/backends.err" & pids+=($!)
$LB_CPU "$NGINX" -c "$work/nginx.conf" -e "$work/nginx.err" & pids+=($!); nginx_pid=$!
$LB_CPU "$HAPROXY" -db -f "$work/haproxy.cfg" & pids+=($!); haproxy_pid=$!
# YARP, the proxy a C# user would pick instead: round robin over the same backends, its defaults, no logging.
$LB_CPU "$work/yarp/Fulcrum.Bench.Yarp" "$P_YARP" "127.0.0.1:$B1" "127.0.0.1:$B2" 2>"$work/yarp.err" & pids+=($!); yarp_pid=$!
declare -A pid_of=([nginx]=$nginx_pid [haproxy]=$haproxy_pid [yarp]=$yarp_pid)
# start_fulcrum TARGET: starts one of the Fulcrum targets and records its process id.
start_fulcrum() {
  case $1 in
    fulcrum) $LB_CPU "$work/fulcrum/fulcrum" run -c "$work/fulcrum.yaml" 2>>"$work/fulcrum.err" & ;;
    fulcrum-observed) $LB_CPU "$work/fulcrum/fulcrum" run -c "$work/fulcrum-observed.yaml" 2>>"$work/observed.err" & ;;
    # shellcheck disable=SC2086
    fulcrum-alt) env ${ALT_ENV:-} $LB_CPU "$alt_bin" run -c "$work/fulcrum-alt.yaml" 2>>"$work/alt.err" & ;;
  esac
  pid_of[$1]=$!; pids+=($!)
}
start_fulcrum fulcrum
start_fulcrum fulcrum-observed
alt_pid=""
if [ -n "${ALT_ENV:-}${ALT_PUBLISH:-}${ALT_LISTENER:-}" ]; then
  sed "s/127.0.0.1:$P_FULCRUM }/127.0.0.1:$P_ALT${ALT_LISTENER:+, $ALT_LISTENER} }/" "$work/fulcrum.yaml" >"$work/fulcrum-alt.yaml"
  start_fulcrum fulcrum-alt; alt_pid=${pid_of[fulcrum-alt]}
fi

ceiling_pid=""
if [ "${CEILING:-0}" = 1 ]; then
  dotnet publish bench/Fulcrum.Bench.Ceiling -c Release -o "$work/ceiling" --nologo -v quiet >/dev/null
  $LB_CPU "$work/ceiling/Fulcrum.Bench.Ceiling" "$P_CEILING" "127.0.0.1:$B1" "127.0.0.1:$B2" 2>"$work/ceiling.err" & pids+=($!); ceiling_pid=$!
  pid_of[ceiling]=$ceiling_pid
fi

for p in $B1 $B2 $P_NGINX $P_HAPROXY $P_YARP $P_FULCRUM $P_OBSERVED ${alt_pid:+$P_ALT} ${ceiling_pid:+$P_CEILING}; do wait_port "$p"; done
for p in $P_NGINX $P_HAPROXY $P_YARP $P_FULCRUM $P_OBSERVED; do
  body=$(curl -s "http://127.0.0.1:$p/") || true
  [ "$body" = "hello world!" ] || { echo "port $p answered '$body'" >&2; exit 1; }
done

tick=$(getconf CLK_TCK)

# One wrk run: prints "rps p50_ms p99_ms cpu_seconds_per_100k".
measure() {
  local port=$1 pid=$2 conns=$3 out before after
  before=$(cpu_of "$pid")
  out=$($LOAD_CPU wrk -t1 -c"$conns" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  after=$(cpu_of "$pid")
  awk -v cpu=$((after - before)) -v tick="$tick" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /requests in/ { n = $1 }
    END { printf "%.0f %.3f %.3f %.3f\n", rps, p50, p99, (n > 0 ? cpu / tick / n * 100000 : 0) }' <<<"$out"
}

declare -A port_of=([fulcrum]=$P_FULCRUM [fulcrum-observed]=$P_OBSERVED [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [yarp]=$P_YARP [fulcrum-alt]=$P_ALT [ceiling]=$P_CEILING)
read -r -a targets <<<"${TARGETS:-fulcrum fulcrum-observed nginx haproxy yarp}"
if [ -n "$alt_pid" ]; then targets+=(fulcrum-alt); fi
if [ -n "$ceiling_pid" ]; then targets+=(ceiling); fi

if [ "${FRESH:-0}" = 1 ]; then WARM=${WARM:-10s}; else WARM=${WARM:-3s}; fi
warm() { $LOAD_CPU wrk -t1 -c64 -d"$WARM" "http://127.0.0.1:${port_of[$1]}/" >/dev/null; }
echo "warming up..." >&2
for t in "${targets[@]}"; do warm "$t"; done

results="$work/results"
: >"$results"
SLICES=${SLICES:-1}
for conns in $CONNECTIONS; do
  for round in $(seq 1 "$ROUNDS"); do
    if [ "${FRESH:-0}" = 1 ]; then
      # A process of its own for each round: what differs between processes (identity hashes,
      # what dynamic PGO chose) is then in the median rather than fixed for the whole run.
      for t in "${targets[@]}"; do
        [[ $t == fulcrum* ]] || continue
        kill -KILL "${pid_of[$t]}"; wait "${pid_of[$t]}" 2>/dev/null || true
        start_fulcrum "$t"; wait_port "${port_of[$t]}"; warm "$t"
      done
    fi
    for slice in $(seq 1 "$SLICES"); do
      # Rotate the order each round and slice so no target always runs first or last; with
      # slices, the targets' readings alternate within a round, and what drifts in the machine
      # over a few seconds falls on both.
      for i in $(seq 0 $((${#targets[@]} - 1))); do
        t=${targets[$(((i + round + slice) % ${#targets[@]}))]}
        echo "$conns connections, round $round/$ROUNDS$([ "$SLICES" -gt 1 ] && echo ", slice $slice/$SLICES"): $t" >&2
        # Each reading on stderr too (round, requests/s, p50 ms, p99 ms, CPU s per 100k requests):
        # the medians hide how far a few-per-cent difference moves from round to round.
        echo "$conns $t $round $(measure "${port_of[$t]}" "${pid_of[$t]}" "$conns")" | tee -a "$results" >&2
        if [ "$t" = fulcrum-observed ]; then
          # Rotate the access log as logrotate does (rename, then SIGUSR1 to reopen), so each round
          # starts on a fresh file rather than one that grows by gigabytes over the run. The old
          # file is flushed to disk before it is removed, between rounds: the disk's writeback,
          # which any logger pays, then lands in no target's timed window rather than in a random one.
          mv "$log" "$log.1" 2>/dev/null || true
          kill -USR1 "${pid_of[fulcrum-observed]}"; sleep 0.2
          if ! [ -s "$log.1" ]; then
            echo "fulcrum-observed wrote no access log lines: its cost would read as zero" >&2; exit 1
          fi
          sync "$log.1"; rm -f "$log.1"
        fi
      done
    done
  done
done

report="$work/report.md"
{
echo
echo "## $(date -u '+%Y-%m-%d %H:%M') UTC, recorded by bench/run.sh"
echo
[ -n "${NOTE:-}" ] && { echo "$NOTE"; echo; }
echo "$(nproc) cores, $PINNED; wrk -t1, $DURATION x $ROUNDS interleaved rounds$([ "$SLICES" -gt 1 ] && echo " of $SLICES alternating slices") (medians)$([ "${FRESH:-0}" = 1 ] && echo ", each Fulcrum round a fresh process warmed $WARM"); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' plus uncommitted changes')."
echo "Command: \`$(for v in ROUNDS DURATION CONNECTIONS PIN TARGETS ALT_ENV ALT_LISTENER ALT_PUBLISH CEILING FRESH WARM SLICES; do [ -n "${!v:-}" ] && printf '%s="%s" ' "$v" "${!v}"; done)bench/run.sh\`."
echo
ALT="${ALT_ENV:-} ${ALT_LISTENER:-} ${ALT_PUBLISH:-}" python3 - "$results" <<'PY'
import math, os, sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
rounds = {}
for conns, target, round_, rps, p50, p99, cpu in rows:
    by.setdefault((int(conns), target), []).append((float(rps), float(p50), float(p99), float(cpu)))
    rounds.setdefault((int(conns), target), {}).setdefault(int(round_), []).append(float(rps))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(4)) for k, v in by.items()}
print("| connections | target | requests/s | p50 ms | p99 ms | CPU s per 100k requests |")
print("| --- | --- | --- | --- | --- | --- |")
for (conns, target), (rps, p50, p99, cpu) in sorted(med.items()):
    print(f"| {conns} | {target} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.2f} |")
print()
print("| connections | ratio | requests/s | p50 | p99 | CPU per request |")
print("| --- | --- | --- | --- | --- | --- |")

def ratio(conns, a, b, label=None):
    """One row: target a over target b, when both ran."""
    if (conns, a) in med and (conns, b) in med:
        x, y = med[(conns, a)], med[(conns, b)]
        print(f"| {conns} | {label or a + '/' + b} | {x[0]/y[0]:.2f} | {x[1]/y[1]:.2f} | {x[2]/y[2]:.2f} | {x[3]/y[3]:.2f} |")

for conns in sorted({c for c, _ in med}):
    for other in ("nginx", "haproxy", "yarp"):
        ratio(conns, "fulcrum", other)
    # Issue 21's goal is stated with metrics and the access log on: these are its ratios.
    for other in ("nginx", "haproxy", "yarp"):
        ratio(conns, "fulcrum-observed", other)
    ratio(conns, "fulcrum-observed", "fulcrum", "fulcrum-observed/fulcrum (metrics + access log on vs off)")
    for other in ("nginx", "haproxy"):
        ratio(conns, "ceiling", other, f"ceiling/{other} (bare Pipelines HTTP/1.1 client, not a proxy)")
    ratio(conns, "fulcrum", "ceiling")
    ratio(conns, "fulcrum-alt", "fulcrum", f"fulcrum-alt/fulcrum ({os.environ.get('ALT', '').strip()})")

# Each round pairs the two targets' readings taken minutes apart at most, so the ratio of a
# round is free of what drifts over the run; across rounds it still carries what differs between
# processes. Its geometric mean over the rounds, with a 95% interval (Student's t), says how
# far a single run's figure can be trusted: medians alone hid that two identical Fulcrums read
# a few per cent apart.
T95 = [0, 12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13, 2.12, 2.11, 2.10, 2.09, 2.09]
def paired(conns, a, b, label):
    """A row: requests/s of a over b, round by round (a round's slices averaged), as a geometric mean and its interval."""
    xs, ys = rounds.get((conns, a), {}), rounds.get((conns, b), {})
    both = sorted(set(xs) & set(ys))
    n = len(both)
    if n < 2:
        return None
    logs = [math.log(statistics.mean(xs[r]) / statistics.mean(ys[r])) for r in both]
    # Past 20 degrees of freedom, t = 2.09 is a little wide: an interval errs on the safe side.
    mean, half = statistics.mean(logs), T95[min(n - 1, 20)] * statistics.stdev(logs) / math.sqrt(n)
    return f"| {conns} | {label} | {math.exp(mean):.3f} | {math.exp(mean - half):.3f} to {math.exp(mean + half):.3f} | {min(math.exp(l) for l in logs):.3f} to {max(math.exp(l) for l in logs):.3f} | {n} |"

pairs = [row for conns in sorted({c for c, _ in med})
         for row in (paired(conns, "fulcrum-observed", "fulcrum", "fulcrum-observed/fulcrum"),
                     paired(conns, "fulcrum-alt", "fulcrum", "fulcrum-alt/fulcrum")) if row]
if pairs:
    print()
    print("| connections | requests/s, paired round by round | geometric mean | 95% interval | lowest to highest | rounds |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(pairs))
PY
} >"$report"
cat "$report"
# Every run is kept in bench/results/ (not committed); docs/performance.md quotes the one it cites.
mkdir -p bench/results
saved="bench/results/$(date -u +%Y-%m-%dT%H%M)-$(git rev-parse --short HEAD 2>/dev/null || echo unknown).md"
cp "$report" "$saved"
echo >&2
echo "saved as $saved" >&2
if [ -n "${DOC:-}" ]; then
  cat "$report" >>"$DOC"
  echo "appended to $DOC" >&2
fi
