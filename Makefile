# etcdproxy-operator. `make demo` and `make test` are the two commands a newcomer runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(abspath .)
VENV      := $(ROOT)/.venv
BIN       := $(ROOT)/.cache/bin
PY        := $(VENV)/bin/python
PTH       := $(VENV)/lib/python3.11/site-packages/etcdproxy-operator-dev.pth
PYTEST    := $(ROOT)/hack/pytest.sh
export PATH := $(VENV)/bin:$(BIN):$(PATH)
export VIRTUAL_ENV := $(VENV)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
PYTEST_ARGS ?=

.PHONY: help install venv tools lint unit integration test demo run cluster-up cluster-down bench clean bundle molecule

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: venv tools ## everything the operator and its tests need (venv + built binaries)

venv: $(VENV)/.stamp $(PTH) ## Python venv with pinned dependencies
# The repo's Python (localcp, bench, tests) and the operator collection importable by their real names.
$(PTH): | $(VENV)/.stamp
	printf '%s\n' "$(ROOT)" "$(ROOT)/collections" > $@
$(VENV)/.stamp: requirements.txt requirements-runtime.txt runner-http/pyproject.toml runner-http/etcdproxy_runner_http/__init__.py
	test -x $(PY) || python3.11 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check ./runner-http
	touch $@

tools: ## build ansible-operator, kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok, the guard
	hack/install-tools.sh

lint: venv ## ruff, yamllint, ansible-lint (production profile), gofmt + go vet of the guard
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s .
	$(VENV)/bin/ansible-lint
	@test -z "$$(gofmt -l guard)" || { echo "gofmt needed: $$(gofmt -l guard)"; exit 1; }
	cd guard && GOFLAGS=-mod=mod go vet ./...

unit: venv ## unit tests of the pure logic (Python, and the guard's Go package)
	$(PYTEST) tests/unit $(PYTEST_ARGS)
	cd guard && GOFLAGS=-mod=mod go test ./...

integration: install ## integration tests against the real local control plane
	$(PYTEST) tests/integration $(PYTEST_ARGS)

test: install lint ## lint + unit + integration + molecule (what CI runs)
	cd guard && GOFLAGS=-mod=mod go test ./...
	$(PYTEST) tests/unit tests/integration $(PYTEST_ARGS)
	$(MAKE) molecule

demo: install ## start a local control plane, run the operator, create the sample, show it
	$(PY) hack/demo.py

run: install ## run the operator out-of-cluster against $$KUBECONFIG
	$(PY) -m localcp run-operator

cluster-up: install ## start the local control plane and leave it running
	$(PY) -m localcp up

cluster-down: ## stop the local control plane started by cluster-up
	$(PY) -m localcp down

bench: install ## benchmarks (separate from tests; print figures, never gate)
	$(PY) bench/run.py

clean: cluster-down ## remove the local control plane state (keeps built binaries)
	rm -rf .cache/localcp

VERSION ?= 0.1.0
bundle: tools ## generate and validate the OLM bundle in bundle/
	rm -rf bundle
	$(BIN)/kustomize build config/manifests | $(BIN)/operator-sdk generate bundle -q --overwrite \
		--version $(VERSION) --package etcdproxy-operator --output-dir bundle
	$(BIN)/operator-sdk bundle validate ./bundle --select-optional suite=operatorframework

molecule: install ## molecule: the local scenario end to end, and syntax of default and kind
	cd $(ROOT) && molecule syntax -s default && molecule syntax -s kind && molecule test -s local
