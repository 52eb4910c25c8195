#!/usr/bin/env bash
# Checks the published contract, the OpenAPI document, against itself and against the server:
#
# 1. openapi-spec-validator on docs/openapi.json (the deployed subset) and on the full document
#    printed by `gatehouse-local --openapi`;
# 2. starts target/debug/gatehouse-local on a free loopback port (memory store, fresh key
#    file), signs up, verifies and signs in a fuzz user, starts a TOTP enrollment, and fuzzes
#    every operation of GET /openapi.json with schemathesis, all checks on, as that signed-in
#    user, offering its real password and codes in most requests that ask for them (hooks.py),
#    in three runs: `main`, every operation but the ones below; `settings`, the org's settings
#    on their own (turning mfa_required on would confine the user to enrollment); and
#    `signout`, last, the operations that sign the user out (logout, DELETE /v1/sessions/{id},
#    the org-wide revoke-all) with GET /v1/sessions. The last two run a fifth of the examples.
#
# Exits non-zero if any step fails; every step runs, so one run reports everything.
# Reports in target/api-contract/: the two documents and the validator's output
# (spec-validator-*.log); schemathesis' text output and JUnit XML, one of each per run
# (schemathesis-{main,settings,signout}.log/.xml); every distinct answer the server gave,
# counted, per run (observed-*.txt); the server's log.
#
# Needs .venv (scripts/venv.sh) and a built binary:
#   cargo build -p gatehouse --bin gatehouse-local --locked && scripts/api-contract.sh
#
# Env: VENV_DIR (default <root>/.venv), GATEHOUSE_LOCAL (default
# <root>/target/debug/gatehouse-local), API_CONTRACT_REPORT_DIR (default
# <root>/target/api-contract), API_CONTRACT_MAX_EXAMPLES, API_CONTRACT_SEED,
# API_CONTRACT_WORKERS (see below for the defaults), API_CONTRACT_SCHEMA (a document file to
# fuzz the local server with instead of its own GET /openapi.json, e.g. to try a fix of the
# document before changing the code).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV_DIR:-$root/.venv}"
server_bin="${GATEHOUSE_LOCAL:-$root/target/debug/gatehouse-local}"
report_dir="${API_CONTRACT_REPORT_DIR:-$root/target/api-contract}"
# Per operation and phase; the coverage phase adds its own cases. 500 takes about 1-1.5 minutes
# on 2 cores (whole script, debug build), leaving room below the 3-4 minute budget.
max_examples="${API_CONTRACT_MAX_EXAMPLES:-500}"
seed="${API_CONTRACT_SEED:-20261201}"
# One schemathesis worker per core; the server shares the same two cores.
workers="${API_CONTRACT_WORKERS:-2}"

email="fuzz@example.com"
password="a long and unusual passphrase 42"

py="$venv/bin/python"
for tool in "$py" "$venv/bin/openapi-spec-validator" "$venv/bin/schemathesis"; do
    [[ -x "$tool" ]] || { echo "api-contract: $tool missing; run scripts/venv.sh" >&2; exit 2; }
done
[[ -x "$server_bin" ]] || {
    echo "api-contract: $server_bin missing; run cargo build -p gatehouse --bin gatehouse-local" >&2
    exit 2
}

mkdir -p "$report_dir"
report_dir="$(cd "$report_dir" && pwd)"
rm -f "$report_dir"/*.log "$report_dir"/*.xml "$report_dir"/*.json "$report_dir"/*.txt

tmp="$(mktemp -d "${TMPDIR:-/tmp}/api-contract.XXXXXX")"
server_pid=""
fuzz_pid=""
cleanup() {
    local pid
    for pid in "$fuzz_pid" "$server_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failures=()
log() { echo "api-contract: $*" >&2; }

# --- 1. The documents are valid OpenAPI ------------------------------------------------------

"$server_bin" --openapi > "$report_dir/openapi-full.json"
cp "$root/docs/openapi.json" "$report_dir/openapi-deployed.json"
for doc in openapi-deployed openapi-full; do
    log "openapi-spec-validator $doc.json"
    if "$venv/bin/openapi-spec-validator" --validation-errors all "$report_dir/$doc.json" \
        > "$report_dir/spec-validator-$doc.log" 2>&1; then
        cat "$report_dir/spec-validator-$doc.log"
    else
        cat "$report_dir/spec-validator-$doc.log"
        failures+=("openapi-spec-validator: $doc.json is not a valid OpenAPI document")
    fi
done

# --- 2. A local server of our own ------------------------------------------------------------

port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
log "starting $server_bin on $base"
# The default configuration, whatever GATEHOUSE_* the caller's environment holds, with a fresh
# key file; except that POST /v1/auth/password/forgot normally answers no sooner than 250 ms (so
# that the time does not tell whether a mail went out): that floor is not part of the contract
# and would make it dominate the run, so it is off here.
unset_env=()
while IFS= read -r name; do
    [[ "$name" == GATEHOUSE_* ]] && unset_env+=(-u "$name")
done < <(compgen -e)
env "${unset_env[@]}" GATEHOUSE_KEYS_DIR="$tmp/keys" GATEHOUSE_FORGOT_MIN_MILLIS=0 \
    RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
    "$server_bin" --addr "127.0.0.1:$port" > "$report_dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$base/openapi.json" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$report_dir/server.log" >&2
        log "the server exited before answering"
        exit 1
    fi
    sleep 0.1
done
curl -fsS -o /dev/null "$base/openapi.json" || { log "the server does not answer on $base"; exit 1; }

# POST a JSON body; prints the status, leaves the response body in $tmp/body.
post_json() {
    curl -sS -o "$tmp/body" -w '%{http_code}' -H 'content-type: application/json' \
        --data-binary "$2" "$base$1"
}
# Prints a JSON object made of KEY VALUE pairs (all strings).
json_object() {
    "$py" -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@"
}

# --- 3. A signed-in user ---------------------------------------------------------------------

creds="$(json_object email "$email" password "$password")"
status="$(post_json /v1/orgs "$(json_object org_name Fuzz email "$email" password "$password")")"
[[ "$status" == 201 ]] || { log "POST /v1/orgs answered $status: $(cat "$tmp/body")"; exit 1; }

# Sign-in will require a verified address: take the token= of the link in the newest mail to
# the user ({APP_URL}/verify-email?token=...) and post it.
curl -fsS -o "$tmp/body" "$base/_local/mail"
verify_token="$("$py" - "$tmp/body" "$email" <<'PY'
import json, re, sys
from urllib.parse import parse_qs, urlsplit
messages = json.load(open(sys.argv[1]))["messages"]
for m in reversed(messages):  # oldest first
    if m["to"] == sys.argv[2]:
        for url in re.findall(r"https?://\S+", m["text"]):
            token = parse_qs(urlsplit(url).query).get("token")
            if token:
                print(token[0])
                sys.exit(0)
        break
PY
)"
if [[ -n "$verify_token" ]]; then
    status="$(post_json /v1/auth/email/verify "$(json_object token "$verify_token")")"
    [[ "$status" == 204 ]] || log "warning: POST /v1/auth/email/verify answered $status: $(cat "$tmp/body"); continuing"
else
    log "warning: no verification link in GET /_local/mail for $email; continuing"
fi

status="$(post_json /v1/auth/login "$creds")"
[[ "$status" == 200 ]] || { log "POST /v1/auth/login answered $status: $(cat "$tmp/body")"; exit 1; }
access_token="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["access_token"])' "$tmp/body")"
log "signed in as $email"

# A pending TOTP enrollment, so that the fuzzer can confirm it (hooks.py) whatever order the
# operations run in.
status="$(curl -sS -o "$tmp/body" -w '%{http_code}' -H 'content-type: application/json' \
    -H "Authorization: Bearer $access_token" --data-binary "$(json_object password "$password")" \
    "$base/v1/mfa/totp/enroll")"
totp_secret=""
if [[ "$status" == 200 ]]; then
    totp_secret="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret"])' "$tmp/body")"
else
    log "warning: POST /v1/mfa/totp/enroll answered $status: $(cat "$tmp/body"); continuing"
fi

# --- 4. Fuzz ---------------------------------------------------------------------------------

# Expected statuses (schemathesis defaults plus what this API documents for requests that are
# well formed but refused):
# - positive data (schema-valid requests) may be refused for reasons no schema can express:
#   401 (wrong credentials/tokens), 403, 404 (no such session), 409 (state conflict),
#   423 (account locked) and 429 (rate limited). 5xx stays in the list only because
#   not_a_server_error reports those on its own. 400 and 422 are NOT accepted: a 422 for a
#   schema-valid body means the document misses a constraint the server enforces.
# - Where a one-time token, an MFA code or (signed in) the account's password is offered, a
#   well-formed but wrong one is answered 400 `invalid_token` / `invalid_mfa_code` /
#   `invalid_credentials` (API.md), so 400 is accepted for positive data there, and only there.
# - schema-violating data must be refused with a 4xx: the schemathesis defaults, plus 413 (body
#   over 64 KiB) and 423: a locked account is refused before its body is read further, as the
#   defaults already allow for 401, 403, 409 and 429.
# - Where the fuzz user's own credentials are asked for (enroll, change, disable, new recovery
#   codes, confirm), hooks.py (before_call) puts the real password in place of a generated one
#   of the right shape, and in schema-valid requests a current TOTP code or an unused recovery
#   code in place of a generated one, except in every fourth request of each operation: so the
#   success paths run (and their answers are checked) as well as the wrong-credential ones, and
#   the user is not locked out for good after its first five wrong passwords. after_call follows
#   the state: a changed password, a new secret, the recovery codes shown, MFA turned off.
#   Schemathesis revalidates a case after the hook, so positive and negative stay what they are.
# - A 422 `password_policy` is not counted as a rejected schema-valid request when no JSON
#   Schema could have stated its rules (hooks.py, filter_failure): the organization's own
#   minimum length above the floor of 8 the document states, breached, repetitive, sequential,
#   context or reused passwords. A `max_length`, or a `min_length` under 8 characters, still
#   counts: the document can and does state those.
cat > "$tmp/hooks.py" <<'EOF'
import collections
import json
import os
import re
import threading
import time

import pyotp
import schemathesis
from hypothesis.internal import lambda_sources as _lambda_sources

# CPython 3.11's ast.parse now and then raises SystemError ("AST constructor recursion depth
# mismatch") when hypothesis parses a module's source to describe a filter's lambda for its
# repr, and the run then ends in a Runtime Error that says nothing about the API. The
# description is cosmetic: an unknown one, as hypothesis gives for sources it cannot read.
_describe = _lambda_sources._lambda_description


def _lambda_description(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


_lambda_sources._lambda_description = _lambda_description

# The floor of every organization's minimum password length, which the document states.
PASSWORD_FLOOR = 8
_lock = threading.Lock()


def _json(response):
    try:
        return response.json()
    except Exception:
        return None


def _statable(rule, value):
    """Whether a JSON Schema could have said that `value` fails the password rule `rule`."""
    if rule == "max_length":
        return True
    if rule == "min_length":
        return not isinstance(value, str) or len(value) < PASSWORD_FLOOR
    return rule is None


def _astral_hidden(c):
    """An invisible character above the BMP (text::hidden_char's ranges there)."""
    o = ord(c)
    return 0x1BCA0 <= o <= 0x1BCA3 or 0x1D173 <= o <= 0x1D17A or 0xE0000 <= o <= 0xE0FFF


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but a schema-valid password refused only by unstatable rules, and a
    made-up audit cursor: a sealed cursor (AES-GCM) is opaque, no schema can state it."""
    if getattr(failure, "code", None) != "ST202" or response.status_code != 422:
        return True
    body = _json(response)
    if isinstance(body, dict) and body.get("code") == "validation_failed":
        fields = [e.get("field") for e in body.get("errors") or [] if isinstance(e, dict)]
        if fields == ["/cursor"]:
            return False
        # An allowlist entry a pattern cannot judge (allowlist::parse_cidr): IPv6 syntax
        # beyond its characters, host bits, IPv4-mapped forms, a network listed twice; and an
        # enabled list without entries (`/entries`), which the description names.
        # Labels with an invisible character above the BMP, as for the fields above.
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        entries = (case.body or {}).get("entries") if isinstance(case.body, dict) else None

        def _unstatable_entry_error(e):
            field = str(e.get("field"))
            if re.fullmatch(r"/entries/[0-9]+/cidr", field):
                return True
            if field == "/entries" and "at least one" in str(e.get("message")):
                return True
            m = re.fullmatch(r"/entries/([0-9]+)/label", field)
            if m and isinstance(entries, list) and int(m.group(1)) < len(entries):
                label = entries[int(m.group(1))].get("label") if isinstance(entries[int(m.group(1))], dict) else None
                return isinstance(label, str) and any(_astral_hidden(c) for c in label)
            return False

        if errors and all(_unstatable_entry_error(e) for e in errors):
            return False
        # The text patterns state the hidden characters of the Basic Multilingual Plane; the
        # invisible ones above it (tags, format controls) are refused too, as the schemas'
        # descriptions say, but an ECMA pattern without the `u` flag cannot name them.
        request = case.body if isinstance(case.body, dict) else {}
        if fields and all(
            isinstance(request.get(str(f).lstrip("/")), str)
            and any(_astral_hidden(c) for c in request[str(f).lstrip("/")])
            for f in fields
        ):
            return False
    if not isinstance(body, dict) or body.get("code") != "password_policy":
        return True
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    request = case.body if isinstance(case.body, dict) else {}
    return not errors or any(
        _statable(e.get("rule"), request.get(str(e.get("field", "")).lstrip("/"))) for e in errors
    )


# What the server accepts (the document's patterns, with Python's end of string).
TOTP_CODE = re.compile(r"^ *[0-9](?: *[0-9]){5} *\Z")
RECOVERY_CODE = re.compile(r"^[ -]*[0-9A-TV-Za-tv-z](?:[ -]*[0-9A-TV-Za-tv-z]){9}[ -]*\Z")
LOGIN_PASSWORD_MAX = 1024
# Every WRONG_EVERY-th request of an operation keeps what was generated (wrong credentials).
WRONG_EVERY = 4

LOGIN = "POST /v1/auth/login"
ENROLL = "POST /v1/mfa/totp/enroll"
CONFIRM = "POST /v1/mfa/totp/confirm"
DISABLE = "POST /v1/mfa/totp/disable"
RECOVERY_CODES = "POST /v1/mfa/recovery-codes"
CHANGE = "POST /v1/auth/password/change"
ALLOWLIST_PUT = "PUT /v1/org/allowlist"
# Where the signed-in user's own password is asked for: re-authentication, and the step-up
# of the users family (a wrong one there counts toward the fuzz user's lockout, too).
PASSWORD_FIELD = {
    LOGIN: "password",
    ENROLL: "password",
    DISABLE: "password",
    CHANGE: "current_password",
    "POST /v1/me/email": "password",
    "POST /v1/users": "password",
    "PATCH /v1/users/{id}": "password",
    "POST /v1/users/{id}/mfa/reset": "password",
    "PATCH /v1/org/settings": "password",
    "POST /v1/org/sessions/revoke-all": "password",
    "POST /v1/tokens": "password",
    "POST /v1/tokens/{id}/rotate": "password",
    "PUT /v1/org/allowlist": "password",
}
FACTOR_OPERATIONS = {CONFIRM, DISABLE, RECOVERY_CODES}

# The fuzz user's credentials as they change during the run.
_user = {
    "email": os.environ["API_CONTRACT_EMAIL"],
    "password": os.environ["API_CONTRACT_PASSWORD"],
    "secret": os.environ.get("API_CONTRACT_TOTP_SECRET") or None,
    "recovery_codes": [],
    # The time step of the last code the server took, by secret: it takes each step once.
    "last_step": {},
}
_requests = collections.Counter()
# What before_call put in place of generated values, by request (recorded by after_call).
_offered = threading.local()


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.value == "positive"


def _current_totp():
    """A current code of the user's secret, unless the server already took this time step."""
    secret = _user["secret"]
    if secret is None:
        return None
    step = int(time.time()) // 30
    if _user["last_step"].get(secret) == step:
        return None
    _offered.step = (secret, step)
    return pyotp.TOTP(secret).at(step * 30)


def _offer_factor(operation, body):
    """Puts a code the server will accept in place of the generated one, when there is one;
    returns the field it set."""
    if operation == CONFIRM:
        code = _current_totp() if isinstance(body.get("code"), str) else None
        if code is not None:
            body["code"] = code
            return "code"
        return None
    if isinstance(body.get("code"), str) and TOTP_CODE.match(body["code"]):
        code = _current_totp()
        if code is not None:
            body["code"] = code
            return "code"
        if _user["recovery_codes"]:
            del body["code"]
            body["recovery_code"] = _user["recovery_codes"].pop()
            return "recovery_code"
    elif isinstance(body.get("recovery_code"), str) and RECOVERY_CODE.match(body["recovery_code"]):
        if _user["recovery_codes"]:
            body["recovery_code"] = _user["recovery_codes"].pop()
            return "recovery_code"
    return None


@schemathesis.hook
def before_call(context, case, kwargs):
    """Offers the fuzz user's real credentials (see the comment in api-contract.sh)."""
    _offered.fields = []
    _offered.step = None
    operation = case.operation.label
    if operation == ALLOWLIST_PUT and isinstance(case.body, dict) and "confirm_self_lockout" in case.body:
        # A confirmed list without the fuzzer's own address would refuse every later request
        # (403): the guard's 409 is what this run checks instead.
        case.body["confirm_self_lockout"] = False
    if operation not in PASSWORD_FIELD and operation not in FACTOR_OPERATIONS:
        return
    body = case.body
    if not isinstance(body, dict):
        return
    # Sign-in, only as the fuzz user (whose address the fuzzer learns from responses).
    if operation == LOGIN and str(body.get("email", "")).strip().lower() != _user["email"]:
        return
    with _lock:
        _requests[operation] += 1
        if _requests[operation] % WRONG_EVERY == 0:
            return
        field = PASSWORD_FIELD.get(operation)
        value = body.get(field) if field else None
        if isinstance(value, str) and 1 <= len(value) <= LOGIN_PASSWORD_MAX:
            body[field] = _user["password"]
            _offered.fields.append(field)
        if operation in FACTOR_OPERATIONS and _positive(case):
            factor = _offer_factor(operation, body)
            if factor:
                _offered.fields.append(factor)


def _follow(case, response):
    """Keeps `_user` in step with what a successful request changed."""
    operation, status = case.operation.label, response.status_code
    body = case.body if isinstance(case.body, dict) else {}
    answer = _json(response) if status in (200, 201) else None
    with _lock:
        step = getattr(_offered, "step", None)
        if step is not None and "code" in getattr(_offered, "fields", []) and status < 500:
            # Taken, or refused as taken by a request at the same time: either way used up.
            if status in (200, 204) or (_json(response) or {}).get("code") == "invalid_mfa_code":
                _user["last_step"][step[0]] = step[1]
        if operation == CHANGE and status == 204:
            _user["password"] = body["new_password"]
        elif operation == ENROLL and status == 200 and isinstance(answer, dict):
            _user["secret"] = answer.get("secret")
            _user["recovery_codes"] = []
        elif operation in (CONFIRM, RECOVERY_CODES) and status == 200 and isinstance(answer, dict):
            _user["recovery_codes"] = list(answer.get("recovery_codes") or [])
        elif operation == DISABLE and status == 204:
            _user["secret"] = None
            _user["recovery_codes"] = []


@schemathesis.hook
def after_call(context, case, response):
    """Follows the fuzz user's credentials; records every answer (operation, mode, status,
    problem code and field errors)."""
    _follow(case, response)
    meta = case.meta
    body = _json(response) if response.status_code >= 400 else None
    errors = []
    if isinstance(body, dict):
        for e in body.get("errors") or []:
            if isinstance(e, dict):
                message = str(e.get("message"))
                field = "/<unknown>" if message == "is not a known field" else str(e.get("field"))
                errors.append(f"{field} {message}" + (f" [{e['rule']}]" if e.get("rule") else ""))
    record = {
        "operation": case.operation.label,
        "mode": meta.generation.mode.value if meta is not None else "?",
        "phase": meta.phase.name.value if meta is not None else "?",
        "status": response.status_code,
        "content_type": response.headers.get("content-type", [""])[0],
        "code": body.get("code") if isinstance(body, dict) else None,
        "errors": sorted(set(errors)),
        "offered": sorted(getattr(_offered, "fields", [])),
    }
    with _lock, open(os.environ["API_CONTRACT_OBSERVED"], "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
EOF

cat > "$tmp/schemathesis.toml" <<EOF
seed = $seed
hooks = "$tmp/hooks.py"
workers = $workers
# How fast hypothesis generates data is not under test; on a loaded machine it must not fail us.
suppress-health-check = ["too_slow"]
# Report every distinct failure of an operation, not only the first one found.
continue-on-failure = true

[cache]
enabled = false

# Reproduce commands in the report carry the real headers and bodies: the token and passwords
# belong to a throwaway server whose key file is deleted on exit.
[output.sanitization]
enabled = false

[generation]
max-examples = $max_examples
database = "none"

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "423", "429", "5xx"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "423", "428", "429", "5xx"]

[[operations]]
include-path = [
    "/v1/auth/email/verify",
    "/v1/auth/password/reset",
    "/v1/auth/password/change",
    "/v1/mfa/totp/enroll",
    "/v1/mfa/totp/confirm",
    "/v1/mfa/totp/disable",
    "/v1/mfa/recovery-codes",
    "/v1/invitations/accept",
    "/v1/me/email",
    "/v1/users",
    "/v1/users/{id}",
    "/v1/users/{id}/mfa/reset",
    "/v1/org/settings",
    "/v1/org/sessions/revoke-all",
    "/v1/tokens",
    "/v1/tokens/{id}/rotate",
    "/v1/org/allowlist",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "423", "429", "5xx"]

EOF

if [[ -n "${API_CONTRACT_SCHEMA:-}" ]]; then
    schema=("$(cd "$(dirname "$API_CONTRACT_SCHEMA")" && pwd)/$(basename "$API_CONTRACT_SCHEMA")" --url "$base")
    log "fuzzing with $API_CONTRACT_SCHEMA instead of GET /openapi.json"
else
    schema=("$base/openapi.json")
fi

# Runs schemathesis with the shared options; $1 names the reports, the rest are filters.
# Also writes observed-NAME.txt: every distinct answer (operation, positive/negative data,
# which real credentials hooks.py offered, status, problem code, field errors) with its count,
# since schemathesis reports one failure per operation and status only.
fuzz() {
    local name="$1" rc=0
    shift
    log "schemathesis ($name)"
    rm -f "$tmp/fuzz.pid"
    (
        echo "$BASHPID" > "$tmp/fuzz.pid"
        cd "$tmp"
        API_CONTRACT_OBSERVED="$tmp/observed-$name.jsonl" API_CONTRACT_EMAIL="$email" \
            API_CONTRACT_PASSWORD="$password" \
            API_CONTRACT_TOTP_SECRET="$totp_secret" exec \
            "$venv/bin/schemathesis" --config-file "$tmp/schemathesis.toml" --no-color run \
            "${schema[@]}" \
            --checks all \
            --header "Authorization: Bearer $access_token" \
            --report junit --report-junit-path "$report_dir/schemathesis-$name.xml" \
            "$@"
    ) 2>&1 | tee "$report_dir/schemathesis-$name.log" &
    local tee_pid=$!
    # Waiting on schemathesis itself, in the background, lets the INT/TERM traps act at once.
    until [[ -s "$tmp/fuzz.pid" ]]; do sleep 0.05; done
    fuzz_pid="$(cat "$tmp/fuzz.pid")"
    wait "$fuzz_pid" || rc=$?
    fuzz_pid=""
    wait "$tee_pid" || true
    "$py" - "$tmp/observed-$name.jsonl" > "$report_dir/observed-$name.txt" <<'PY' || true
import collections, json, sys
counts = collections.Counter()
try:
    lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
except FileNotFoundError:
    lines = []
for line in lines:
    r = json.loads(line)
    counts[(r["operation"], r["mode"], ",".join(r.get("offered") or []) or "-", r["status"], r["content_type"], r["code"] or "", "; ".join(r["errors"]))] += 1
print(f"{'count':>6}  operation | data | real credentials offered | status | content type | problem code | field errors")
for key, n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], -kv[1])):
    print(f"{n:>6}  " + " | ".join(map(str, key)))
PY
    return "$rc"
}

# POST /v1/auth/logout, DELETE /v1/sessions/{id} (given the current session's id, which
# GET /v1/sessions lists) and POST /v1/org/sessions/revoke-all sign the fuzz user out: every
# later call would be refused 401, which the checks accept, so they would hide bugs. And
# PATCH /v1/org/settings may turn `mfa_required` on, which confines the fuzz user (who has no
# MFA) to enrollment: every later call elsewhere would be a 403. So the settings run on their
# own after the main run, and the sign-outs last, with GET /v1/sessions (whose ids the
# stateful phase feeds to the DELETE).
if ! fuzz main --exclude-path /v1/auth/logout --exclude-path '/v1/sessions/{id}' \
    --exclude-path /v1/org/sessions/revoke-all --exclude-path /v1/org/settings; then
    failures+=("schemathesis: failures in the main run ($report_dir/schemathesis-main.log)")
fi
if ! fuzz settings --include-path /v1/org/settings \
    --max-examples "$(( max_examples >= 5 ? max_examples / 5 : 1 ))"; then
    failures+=("schemathesis: failures in the settings run ($report_dir/schemathesis-settings.log)")
fi
# Once signed out, nearly every answer is 401: a fifth of the examples is plenty.
if ! fuzz signout \
    --include-path-regex '^/v1/sessions(/\{id\})?$|^/v1/auth/logout$|^/v1/org/sessions/revoke-all$' \
    --max-examples "$(( max_examples >= 5 ? max_examples / 5 : 1 ))"; then
    failures+=("schemathesis: failures in the sign-out run ($report_dir/schemathesis-signout.log)")
fi

if ! kill -0 "$server_pid" 2>/dev/null; then
    failures+=("the server exited during the run ($report_dir/server.log)")
fi

if ((${#failures[@]})); then
    log "FAILED:"
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
log "the contract holds: documents valid, no schemathesis failure"
