# Infra and Python tooling targets; included from the top-level Makefile.
# All tools come from .venv/ (made by scripts/venv.sh); nothing is activated.

VENV     := .venv
PY       := $(VENV)/bin/python
CFN_LINT := $(VENV)/bin/cfn-lint
SAM      := $(VENV)/bin/sam
TEMPLATE := infra/template.yaml
# No telemetry calls from SAM CLI, no instance-metadata probing by botocore.
SAM_ENV  := SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true

.PHONY: venv venv-build lint-infra build-lambda build-lambda-cargo deploy

venv:
	scripts/venv.sh

# Adds cargo-lambda and zig (large) to .venv for the Lambda builds.
venv-build:
	scripts/venv.sh --build

# Neither command needs AWS credentials; sam needs only a region.
lint-infra: venv
	$(CFN_LINT) $(TEMPLATE)
	$(SAM_ENV) $(SAM) validate --lint --template $(TEMPLATE) --region us-east-1

# sam build runs `cargo lambda build --release --arm64 --bin <Binary>` in the workspace root
# for each function (BuildMethod rust-cargolambda); cargo-lambda cross-compiles with zig, so no
# Docker. Output: .aws-sam/build/ (git-ignored). cargo-lambda installs the
# aarch64-unknown-linux-gnu rustup target on first use.
build-lambda: venv-build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SAM_ENV) $(SAM) build --template $(TEMPLATE) --beta-features

# The same binaries without SAM: target/lambda/<name>/bootstrap.
build-lambda-cargo: venv-build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 --workspace

# Interactive: asks for the stack parameters (AppUrl has no default) and writes the answers
# to samconfig.toml. Needs real AWS credentials.
deploy: build-lambda
	$(SAM_ENV) $(SAM) deploy --guided
