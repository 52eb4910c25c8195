# Gatehouse. `make run` starts the whole API locally; `make test` installs what the tests need
# and runs every test. See README.md.

CARGO ?= cargo
ARGS  ?=

include mk/infra.mk
include mk/api.mk

.PHONY: run test test-rust test-browser screenshots lint fmt fmt-check clippy bench bench-latency bench-audit bench-cold bench-functions bench-size cost cost-check build deploy clean openapi

## Start every route in one local server on http://127.0.0.1:3000 (memory store, local keys,
## local mailer). Pass flags with ARGS, e.g. make run ARGS="--store dynamodb".
run:
	$(CARGO) run -p gatehouse --bin gatehouse-local -- $(ARGS)

## Everything CI runs: template lint, formatting, clippy, and every Rust test (the DynamoDB and
## Secrets Manager ones against moto's server, started and stopped by scripts/with-moto; the
## function binaries first, which tests/suite/functions.rs runs as Lambda runs them).
test: venv lint-infra fmt-check clippy cost-check test-rust api-contract test-browser

test-rust: venv
	$(CARGO) build --workspace --bins --locked
	scripts/with-moto $(CARGO) test --workspace --locked

## The console in headless Chromium (Debian's, installed if missing) driven by Playwright,
## with axe-core's accessibility check (scripts/browser-tests.sh; docs/console.md).
test-browser: venv
	$(CARGO) build -p gatehouse --bin gatehouse-local --locked
	scripts/browser-tests.sh

## Rewrites the console's screenshots in docs/console/ (the README shows them).
screenshots: venv
	$(CARGO) build -p gatehouse --bin gatehouse-local --locked
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console scripts/browser-tests.sh

lint: lint-infra fmt-check clippy

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## Regenerate docs/openapi.json, the document a deployed stack serves (a test checks it).
openapi:
	$(CARGO) run -q -p gatehouse --bin gatehouse-local -- --openapi-deployed > docs/openapi.json

## Latency of login, MFA verify, logout, refresh, me and JWKS in-process, against one
## argon2id hash; the Lambda authorizer's decision (access token, API token) with a warm cache;
## then the audit query over 100,000 events on the DynamoDB path (moto).
bench: bench-latency bench-audit bench-cold bench-functions bench-size

bench-latency:
	$(CARGO) bench -p gatehouse-tests --bench latency

## A page of the audit query from an org with 100,000 events, against moto's DynamoDB
## (BENCH_AUDIT_EVENTS sets the count).
bench-audit: venv
	scripts/with-moto $(CARGO) bench -p gatehouse-tests --bench audit

## Cold start of every function as Lambda starts it (release binaries, the stand-in Runtime
## API, moto), beside a hello-world lambda_http binary (BENCH_COLD_RUNS sets the starts).
bench-cold: venv
	$(CARGO) build --release --workspace --bins --locked
	scripts/with-moto $(CARGO) bench -p gatehouse-tests --bench cold

## Login, MFA verify, refresh and the authorizer run by their release binaries as Lambda runs
## them, at 128-2048 MB with the CPU Lambda gives each size (a cgroup CPU quota: needs root and
## a writable cgroup), and the DynamoDB request units of each; writes docs/bench/functions.json
## (BENCH_FUNCTION_SAMPLES sets the calls per size). Then `make cost`.
bench-functions: venv
	$(CARGO) build --release --workspace --bins --locked
	scripts/with-moto $(CARGO) bench -p gatehouse-tests --bench functions

## Each function's Lambda artifact as `sam build` makes it (arm64, stripped): its size against
## the 8 MiB budget.
bench-size: build-lambda-cargo
	scripts/binary-sizes

## What a deployment costs: rewrites the tables of docs/cost.md from docs/bench/*.json and the
## template's MemorySize (scripts/cost.py).
cost: venv
	$(PY) scripts/cost.py --write

## Fails when docs/cost.md's tables are not what scripts/cost.py computes now.
cost-check: venv
	$(PY) scripts/cost.py --check

## Lambda artifacts: sam build (BuildMethod rust-cargolambda; cargo-lambda and zig from .venv).
build: build-lambda

clean:
	$(CARGO) clean
	rm -rf .aws-sam
