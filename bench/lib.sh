# Shared by the bench scripts (sourced, not run): installing what they need, and the nginx
# backends that answer the 13-byte body they all measure against.

# need_tools TOOL...: installs with apt-get those of TOOL (Debian package names that are also the
# command names) that are not on PATH or in /usr/sbin.
need_tools() {
  local missing=() t
  for t in "$@"; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || missing+=("$t")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# tool_path TOOL: the command's path (nginx and haproxy live in /usr/sbin, often not on PATH).
tool_path() { command -v "$1" || echo "/usr/sbin/$1"; }

# nginx_conf DIR NAME HTTP: writes DIR/NAME.conf, one nginx worker in the foreground whose http
# block has no access log, keep-alive without limit, and the lines HTTP.
nginx_conf() {
  cat >"$1/$2.conf" <<CONF
worker_processes 1;
daemon off;
pid $1/$2.pid;
error_log $1/$2.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
$3
}
CONF
}

# backends_conf DIR PORT...: writes DIR/backends.conf, a server on each 127.0.0.1:PORT answering
# "hello world!\n" (13 bytes).
backends_conf() {
  local dir=$1 port servers=""
  shift
  for port in "$@"; do
    servers+="  server { listen 127.0.0.1:$port; location / { return 200 \"hello world!\\n\"; } }"$'\n'
  done
  nginx_conf "$dir" backends "${servers%$'\n'}"
}

# wait_port PORT: waits up to 10 s for 127.0.0.1:PORT to accept a connection, else exits.
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# cpu_of PID: CPU ticks (user + system) of a process and its children, from /proc.
cpu_of() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

# bench_workdir NAME: sets $work to a new folder /tmp/NAME.XXXXXX and starts the array pids; on
# exit, every process in pids is stopped and the folder removed. Only processes the script
# started are ever stopped.
bench_workdir() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
