#!/usr/bin/env bash
# Memory per idle keep-alive client connection (issue 21's goal: at most 4 KiB each): N clients
# each send one request through the fulcrum binary and keep their connection open, idle; the
# script prints Fulcrum's resident memory before and after, and the difference per connection.
# Not part of CI.
#
# Usage: bench/idle.sh        (env: COUNT=10000; LISTEN="listener YAML lines" to try settings;
#                              GCDUMP=1: also the heap's largest types with the connections open,
#                              from dotnet-gcdump, installed into bench/.tools once)
# Binds 127.0.0.1 ports 19401-19402 only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-10000}
. bench/lib.sh
need_tools nginx
NGINX=$(tool_path nginx)
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/fulcrum-idle.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
B=19401 P=19402
backends_conf "$work" "$B"
"$NGINX" -c "$work/backends.conf" -e "$work/backends.err" & pids+=($!)
dotnet publish src/Fulcrum.Cli -c Release -o "$work/fulcrum" --nologo -v quiet >/dev/null
cat >"$work/fulcrum.yaml" <<CONF
listeners:
  - name: web
    address: 127.0.0.1:$P
${LISTEN:-}
routes: [{ name: all, pool: backends }]
pools: [{ name: backends, backends: [127.0.0.1:$B] }]
access_log: { enabled: false }
CONF
gcdump=""
if [ "${GCDUMP:-0}" = 1 ]; then
  tools=bench/.tools
  [ -x "$tools/dotnet-gcdump" ] || dotnet tool install --tool-path "$tools" dotnet-gcdump --version 10.0.750501 >/dev/null 2>&1 || true
  [ -x "$tools/dotnet-gcdump" ] && gcdump="$PWD/$tools/dotnet-gcdump"
fi
"$work/fulcrum/fulcrum" run -c "$work/fulcrum.yaml" 2>"$work/fulcrum.err" & pids+=($!); fulcrum=$!
python3 - "$fulcrum" "$P" "$COUNT" "$gcdump" "$work" <<'PY'
import resource, socket, subprocess, sys, time
pid, port, count, gcdump, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError:
        time.sleep(0.1)
def request(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    got = b""
    while not got.endswith(b"hello world!\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("fulcrum closed a connection")
        got += chunk
# Warm: a few connections through every path, so the baseline holds what any traffic brings.
for _ in range(50):
    with socket.create_connection(("127.0.0.1", port)) as s:
        request(s)
time.sleep(1)
before = rss()
clients = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    request(s)
    clients.append(s)
time.sleep(2)
after = rss()
print(f"{count} idle keep-alive connections: fulcrum {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after, "
      f"{(after - before) / count:.2f} KiB each")
if gcdump:
    dump = f"{work}/idle.gcdump"
    subprocess.run([gcdump, "collect", "-p", str(pid), "-o", dump], check=True, stdout=subprocess.DEVNULL)
    report = subprocess.run([gcdump, "report", dump], check=True, capture_output=True, text=True).stdout
    print("\n".join(report.splitlines()[:int(__import__("os").environ.get("GCDUMP_LINES", "40"))]))
for s in clients:
    s.close()
PY
