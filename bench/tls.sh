#!/usr/bin/env bash
# TLS: Fulcrum against nginx with the same certificate and key (ECDSA P-256, made here with
# openssl), in interleaved rounds, each proxying to the same two nginx backends over cleartext
# keep-alive.
#
#   handshakes  every request on a new connection ("Connection: close"): a full TCP and TLS
#               handshake plus one proxied request each, so requests/s is handshakes/s
#   keep-alive  requests over kept TLS connections: the cost of the record layer
#
# nginx has one worker, its default ciphers, and session tickets and caching as it ships them;
# Fulcrum has its defaults with metrics and the access log off. Both negotiate TLS 1.3.
# Ratios are Fulcrum's over nginx's medians; "CPU/100k" is the balancer's CPU seconds (user +
# system, from /proc) per 100,000 requests.
#
# Usage: bench/tls.sh   (env: ROUNDS=3 DURATION=10s HANDSHAKE_CONNECTIONS=32 KEEPALIVE_CONNECTIONS=64)
# Installs nginx and wrk with apt-get when they are missing. Binds 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
HC=${HANDSHAKE_CONNECTIONS:-32}
KC=${KEEPALIVE_CONNECTIONS:-64}
B1=19111 B2=19112 P_NGINX=19211 P_FULCRUM=19213

# shellcheck source=bench/lib.sh
. bench/lib.sh
need_tools nginx wrk
NGINX=$(tool_path nginx)

# The run's folder and the processes it starts ("pids+=($!)"), both gone when it exits.
bench_workdir fulcrum-tls-bench

echo "building fulcrum (Release)..." >&2
dotnet publish src/Fulcrum.Cli -c Release -o "$work/fulcrum" --nologo -v quiet >/dev/null

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=bench.test" \
  -addext "subjectAltName=DNS:bench.test" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

backends_conf "$work" "$B1" "$B2"
nginx_conf "$work" nginx "  upstream backends { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 256; }
  server {
    listen 127.0.0.1:$P_NGINX ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
cat >"$work/fulcrum.yaml" <<CONF
listeners:
  - name: web
    address: 127.0.0.1:$P_FULCRUM
    tls: { certificates: [{ cert: $work/cert.pem, key: $work/key.pem }] }
routes: [{ name: all, pool: backends }]
pools:
  - name: backends
    balancing: round_robin
    backends: [127.0.0.1:$B1, 127.0.0.1:$B2]
access_log: { enabled: false }
metrics: { enabled: false }
CONF

"$NGINX" -c "$work/backends.conf" -e "$work/backends.err" & pids+=($!)
"$NGINX" -c "$work/nginx.conf" -e "$work/nginx.err" & pids+=($!); nginx_pid=$!
env ${FULCRUM_ENV:-} "$work/fulcrum/fulcrum" run -c "$work/fulcrum.yaml" 2>"$work/fulcrum.err" & pids+=($!); fulcrum_pid=$!
declare -A pid_of=([nginx]=$nginx_pid [fulcrum]=$fulcrum_pid) port_of=([nginx]=$P_NGINX [fulcrum]=$P_FULCRUM)

for p in $B1 $B2 $P_NGINX $P_FULCRUM; do wait_port "$p"; done
for t in nginx fulcrum; do
  body=$(curl -sk "https://127.0.0.1:${port_of[$t]}/") || true
  [ "$body" = "hello world!" ] || { echo "$t answered '$body'" >&2; cat "$work/fulcrum.err" >&2; exit 1; }
  version=$(curl -skv "https://127.0.0.1:${port_of[$t]}/" 2>&1 | grep -o 'SSL connection using [^ ]*' | head -1)
  echo "$t: $version" >&2
done

tick=$(getconf CLK_TCK)

# measure TARGET CONNECTIONS [wrk args]: prints "rps p99_ms cpu_seconds_per_100k errors".
measure() {
  local t=$1 conns=$2 out before after
  shift 2
  before=$(cpu_of "${pid_of[$t]}")
  out=$(wrk -t1 -c"$conns" -d"$DURATION" --latency "$@" "https://127.0.0.1:${port_of[$t]}/")
  after=$(cpu_of "${pid_of[$t]}")
  awk -v cpu=$((after - before)) -v tick="$tick" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +99%/ { p99 = ms($2) }
    /requests in/ { n = $1 }
    /Socket errors/ { errors = $0 }
    /Non-2xx/ { errors = errors " " $0 }
    END { printf "%.0f %.3f %.3f %s\n", rps, p99, (n > 0 ? cpu / tick / n * 100000 : 0), (errors == "" ? "-" : "\"" errors "\"") }' <<<"$out"
}

echo "warming up..." >&2
for t in nginx fulcrum; do wrk -t1 -c"$KC" -d3s "https://127.0.0.1:${port_of[$t]}/" >/dev/null; wrk -t1 -c"$HC" -d3s -H "Connection: close" "https://127.0.0.1:${port_of[$t]}/" >/dev/null; done

declare -A rows
for round in $(seq 1 "$ROUNDS"); do
  for t in nginx fulcrum; do
    rows[handshakes,$t]+="$(measure "$t" "$HC" -H "Connection: close")"$'\n'
    rows[keepalive,$t]+="$(measure "$t" "$KC")"$'\n'
  done
  echo "round $round of $ROUNDS done" >&2
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
col() { awk -v c="$1" 'NF { print $c }'; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
report="$work/report.md"
{
  echo "### TLS, $(date -u '+%Y-%m-%d %H:%M') UTC, commit $commit"
  echo
  echo "ECDSA P-256 certificate, TLS 1.3, $ROUNDS interleaved rounds of $DURATION, medians; handshakes at $HC connections, keep-alive at $KC."
  echo
  echo "| test | target | requests/s | p99 ms | CPU s/100k | vs nginx: requests/s | CPU | p99 |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for test in handshakes keepalive; do
    nr=$(col 1 <<<"${rows[$test,nginx]}" | median); np=$(col 2 <<<"${rows[$test,nginx]}" | median); nc=$(col 3 <<<"${rows[$test,nginx]}" | median)
    for t in nginx fulcrum; do
      r=$(col 1 <<<"${rows[$test,$t]}" | median); p=$(col 2 <<<"${rows[$test,$t]}" | median); c=$(col 3 <<<"${rows[$test,$t]}" | median)
      awk -v test="$test" -v t="$t" -v r="$r" -v p="$p" -v c="$c" -v nr="$nr" -v np="$np" -v nc="$nc" \
        'BEGIN { printf "| %s | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", test, t, r, p, c, r / nr, c / nc, p / np }'
    done
  done
  echo
  echo "Errors reported by wrk, per reading: nginx handshakes $(col 4 <<<"${rows[handshakes,nginx]}" | sort -u | tr '\n' ' ')/ fulcrum handshakes $(col 4 <<<"${rows[handshakes,fulcrum]}" | sort -u | tr '\n' ' ')"
} >"$report"
cat "$report"
mkdir -p bench/results
cp "$report" "bench/results/$(date -u '+%Y-%m-%dT%H%M')-tls-$commit.md"
