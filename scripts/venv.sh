#!/usr/bin/env bash
# Creates/updates the Python virtualenv at .venv/ with the pinned test and infra tooling
# (moto server, cfn-lint, aws-sam-cli, pyotp) from scripts/requirements-test.txt and the API
# contract tooling (schemathesis, openapi-spec-validator) from scripts/requirements-api.txt;
# the two locks pin every package they share to the same version.
# With --build it also installs scripts/requirements-build.txt (cargo-lambda + zig).
#
# Idempotent and fast when nothing changed: each requirements file has a stamp holding a
# hash of the file and the interpreter version, and pip only runs when that hash changes.
#
# Env: PYTHON (default python3), VENV_DIR (default <project root>/.venv).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
venv="${VENV_DIR:-$root/.venv}"

reqs=("$root/scripts/requirements-test.txt" "$root/scripts/requirements-api.txt")
for arg in "$@"; do
    case "$arg" in
        --build) reqs+=("$root/scripts/requirements-build.txt") ;;
        *) echo "usage: $0 [--build]" >&2; exit 2 ;;
    esac
done

pyversion="$("$python" -c 'import sys; print(sys.version)')"

hash_of() {
    "$python" - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256(sys.version.encode())
with open(sys.argv[1], "rb") as f:
    h.update(f.read())
print(h.hexdigest())
PY
}

stamp_of() { echo "$venv/.stamp-$(basename "$1" .txt)"; }

up_to_date() {
    [[ -x "$venv/bin/python" ]] || return 1
    local req
    for req in "${reqs[@]}"; do
        [[ -f "$(stamp_of "$req")" && "$(cat "$(stamp_of "$req")")" == "$(hash_of "$req")" ]] || return 1
    done
}

if up_to_date; then
    exit 0
fi

# Serialise concurrent runs (e.g. make -j) when flock is available.
if command -v flock >/dev/null 2>&1 && [[ -z "${GATEHOUSE_VENV_LOCKED:-}" ]]; then
    mkdir -p "$venv"
    export GATEHOUSE_VENV_LOCKED=1
    exec flock "$venv/.lock" "$0" "$@"
fi

wipe() { find "$venv" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +; }

# A broken venv, or one made by another interpreter version: start over.
if [[ -e "$venv/bin/python" ]]; then
    have="$("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null || true)"
    if [[ "$have" != "$pyversion" ]]; then
        echo "venv.sh: $venv is broken or from another Python; recreating" >&2
        wipe
    fi
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "venv.sh: creating $venv" >&2
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        # Debian without python3-venv has no ensurepip; virtualenv brings its own pip.
        wipe
        "$python" -m pip install --user --quiet --disable-pip-version-check virtualenv
        "$python" -m virtualenv --quiet "$venv"
    fi
fi

for req in "${reqs[@]}"; do
    stamp="$(stamp_of "$req")"
    want="$(hash_of "$req")"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        continue
    fi
    echo "venv.sh: installing $(basename "$req") into $venv" >&2
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
    "$venv/bin/python" -m pip check >&2
    echo "$want" > "$stamp"
done
echo "venv.sh: done" >&2
