#!/usr/bin/env bash
# A real browser through Fulcrum (issue 6): headless Chromium loads the demo's WebSocket page
# through `fulcrum demo` and gets its message echoed. Installs Debian's chromium with apt-get
# when it is missing. Binds 127.0.0.1 only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian's package) with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
dotnet run --project tests/Fulcrum.Browser -- /usr/bin/chromium
