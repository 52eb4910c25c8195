# API contract targets; included from the top-level Makefile.
# The OpenAPI document is the published contract: `api-contract` validates it with
# openapi-spec-validator and fuzzes a local server with schemathesis as a signed-in user
# (scripts/api-contract.sh; reports in target/api-contract/). Tools come from .venv/.

CARGO ?= cargo

.PHONY: api-contract

api-contract: venv
	$(CARGO) build -p gatehouse --bin gatehouse-local --locked
	scripts/api-contract.sh
