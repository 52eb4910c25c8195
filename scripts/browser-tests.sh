#!/usr/bin/env bash
# Usage: scripts/browser-tests.sh [pytest args...]
#
# The console's browser suite (tests/browser/test_console.py): headless Chromium from Debian
# driven by Playwright from .venv (pointed at the system browser; Playwright downloads
# nothing), axe-core from npm (tests/browser/package-lock.json, `npm ci` into
# tests/browser/node_modules), against target/debug/gatehouse-local on a free loopback port
# with the memory store and a fresh key directory.
#
# Installs what is missing: Chromium with apt-get (as root, or with sudo -n); fails, never
# skips, when it cannot. Env: CHROMIUM (default: chromium on PATH), CONSOLE_SCREENSHOTS (a
# directory for the pages' screenshots; `make screenshots` sets docs/console).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV_DIR:-$root/.venv}"
server_bin="${GATEHOUSE_LOCAL:-$root/target/debug/gatehouse-local}"
log() { echo "browser-tests: $*" >&2; }

# --- Chromium from Debian ----------------------------------------------------------------
chromium="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [[ -z "$chromium" ]]; then
    log "installing chromium with apt-get"
    if [[ "$(id -u)" == 0 ]]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else
        log "chromium is missing and apt-get needs root: install the Debian package chromium"
        exit 2
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    chromium="$(command -v chromium)"
fi
# Debian's /usr/bin/chromium is a wrapper script; Playwright wants the binary itself.
if [[ -x /usr/lib/chromium/chromium && "$chromium" == /usr/bin/chromium ]]; then
    chromium=/usr/lib/chromium/chromium
fi
log "browser: $chromium ($("$chromium" --version 2>/dev/null | head -1))"

# --- axe-core from npm -------------------------------------------------------------------
if [[ ! -f "$root/tests/browser/node_modules/axe-core/axe.min.js" ]] ||
    ! cmp -s "$root/tests/browser/package-lock.json" "$root/tests/browser/node_modules/.package-lock.json.copy"; then
    (cd "$root/tests/browser" && npm ci --no-audit --no-fund --silent)
    cp "$root/tests/browser/package-lock.json" "$root/tests/browser/node_modules/.package-lock.json.copy"
fi

# --- The local server --------------------------------------------------------------------
[[ -x "$server_bin" ]] || { log "$server_bin missing; run cargo build -p gatehouse --bin gatehouse-local"; exit 2; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/browser-tests.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

py="$venv/bin/python"
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
unset_env=()
while IFS= read -r name; do
    [[ "$name" == GATEHOUSE_* ]] && unset_env+=(-u "$name")
done < <(compgen -e)
env ${unset_env[@]+"${unset_env[@]}"} -u APP_URL GATEHOUSE_KEYS_DIR="$tmp/keys" APP_URL="$base/console" \
    GATEHOUSE_FORGOT_MIN_MILLIS=0 RUST_LOG="${RUST_LOG:-warn}" NO_COLOR=1 \
    "$server_bin" --addr "127.0.0.1:$port" > "$tmp/server.log" 2>&1 &
server_pid=$!
ready=0
for _ in $(seq 1 300); do
    if "$py" -c "import urllib.request as u; u.urlopen('$base/console', timeout=1)" 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; log "the server exited"; exit 1; }
    sleep 0.1
done
((ready)) || { cat "$tmp/server.log" >&2; log "the server did not answer on $base/console"; exit 1; }

log "console at $base/console"
status=0
CONSOLE_BASE="$base" CHROMIUM="$chromium" "$py" -m pytest -p no:cacheprovider -q \
    "$root/tests/browser" "$@" || status=$?
if ((status != 0)); then
    log "server log:"
    tail -n 50 "$tmp/server.log" >&2
fi
exit "$status"
