# etcdproxy-operator. `make demo` and `make test` are the two commands a newcomer runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(abspath .)
VENV      := $(ROOT)/.venv
BIN       := $(ROOT)/.cache/bin
PY        := $(VENV)/bin/python
# The interpreter the operator image ships (Debian bookworm's, hack/packages/operator-base.txt): the
# operator the tests and benchmarks start locally runs on it too (docs/design.md "Runtime and pins").
PYTHON    := /usr/bin/python3.11
PTH       := $(VENV)/lib/python3.11/site-packages/etcdproxy-operator-dev.pth
PYTEST    := $(ROOT)/hack/pytest.sh
# Everything the harness starts runs in a network namespace of its own, with no route out (docs/node.md).
NETNS     := $(ROOT)/hack/in-netns.sh
export PATH := $(VENV)/bin:$(BIN):$(PATH)
export VIRTUAL_ENV := $(VENV)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
PYTEST_ARGS ?=

.PHONY: help install venv tools tools-demo packages images olm-images lint unit integration node olm-test test demo \
	olm-demo run cluster-up cluster-down bench bench-scale bench-floor bench-trace clean bundle molecule

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: venv tools packages images ## everything the operator and its tests need (venv, binaries, packages, images)

venv: $(VENV)/.installed $(PTH) ## Python venv with pinned dependencies
# The repo's Python (localcp, bench, tests) and the operator collection importable by their real names.
$(PTH): | $(VENV)/.installed
	printf '%s\n' "$(ROOT)" "$(ROOT)/collections" > $@
# A venv made from another interpreter is made again.
$(VENV)/.installed: requirements.txt requirements-runtime.txt runner-http/pyproject.toml runner-http/etcdproxy_runner_http/__init__.py
	grep -qxF 'executable = $(PYTHON)' $(VENV)/pyvenv.cfg 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check ./runner-http
	touch $@

tools: ## build the Go binaries (control plane, kubelet, kube-proxy, CoreDNS, ansible-operator, the guard, ...)
	hack/install-tools.sh

tools-demo: ## only the Go binaries `make demo` runs
	hack/install-tools.sh demo

packages: ## the real node's Debian packages (containerd, runc, CNI plugins, iptables), pinned
	hack/install-packages.sh

images: venv ## container images built from the repo (operator, guard, pause, CoreDNS, sample-apiserver)
	$(PY) -m localcp.images

olm-images: venv tools ## the OLM path's images (OLM, opm, built from their modules) and the registry's binary
	$(PY) -m localcp.olm_images

lint: venv ## ruff, yamllint, ansible-lint (production profile), gofmt + go vet of the guard
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s .
	$(VENV)/bin/ansible-lint
	@test -z "$$(gofmt -l guard)" || { echo "gofmt needed: $$(gofmt -l guard)"; exit 1; }
	cd guard && GOFLAGS=-mod=mod go vet ./...

unit: venv tools ## unit tests of the pure logic (Python, and the guard's Go package)
	$(PYTEST) tests/unit $(PYTEST_ARGS)
	cd guard && GOFLAGS=-mod=mod go test ./...

integration: install ## integration tests against the real local control plane (kwok node)
	$(NETNS) --once test $(PYTEST) tests/integration $(PYTEST_ARGS)

node: install ## the real-node tests (operator in-cluster, real pods, containment, cleanup)
	$(NETNS) --once test $(PYTEST) tests/node $(PYTEST_ARGS)

olm-test: install olm-images ## install and upgrade through OLM on a real node (its own cluster and namespace)
	$(NETNS) --once olm $(PYTEST) tests/olm $(PYTEST_ARGS)

test: install olm-images lint ## lint + unit + integration + real-node + OLM tests + molecule (what CI runs)
	cd guard && GOFLAGS=-mod=mod go test ./...
	$(NETNS) --once test $(PYTEST) tests/unit tests/integration tests/node $(PYTEST_ARGS)
	$(MAKE) olm-test
	$(MAKE) molecule

demo: venv tools-demo packages images ## a local cluster with a real node: the operator in-cluster, the sample, wardle's API server on it
	if [[ "$${KEEP:-}" == 1 ]]; then $(NETNS) demo $(PY) hack/demo.py || { $(NETNS) --delete demo; exit 1; }; \
	else $(NETNS) --once demo $(PY) hack/demo.py; fi

olm-demo: install olm-images ## the operator installed and upgraded through OLM (catalog, subscription) on a real node
	if [[ "$${KEEP:-}" == 1 ]]; then $(NETNS) demo $(PY) hack/olm_demo.py || { $(NETNS) --delete demo; exit 1; }; \
	else $(NETNS) --once demo $(PY) hack/olm_demo.py; fi

run: install ## run the operator out-of-cluster against $$KUBECONFIG (inside the demo's network namespace)
	$(NETNS) demo $(PY) -m localcp run-operator

cluster-up: install ## start the local control plane and leave it running (NODE=real for a real node; default kwok)
	$(NETNS) demo $(PY) -m localcp up --node $(or $(NODE),kwok)

cluster-down: ## stop the local cluster started by cluster-up or KEEP=1 make demo, and remove its network namespace
	$(NETNS) demo $(PY) -m localcp down
	$(NETNS) --delete demo

bench: install ## benchmarks (separate from tests; print figures, never gate)
	$(NETNS) --once bench $(PY) bench/run.py

bench-scale: install ## 500 EtcdStorages on one operator: idle CPU over 30 min, Ready under load, memory (~50 min)
	$(NETNS) --once bench-scale $(PY) -m bench.scale

bench-floor: install ## issue 16's latency and burst goals: the shape's floor (a minimal role of this shape) beside ours (kwok)
	$(NETNS) --once bench-floor $(PY) -m bench.floor

bench-trace: install ## where apply->Ready goes: each run's tasks and the watch events, one tenant at a time (kwok)
	$(NETNS) --once bench-trace $(PY) -m bench.trace

clean: cluster-down ## remove the local control plane state (keeps built binaries)
	rm -rf .cache/localcp

bundle: venv tools ## generate and validate the OLM bundle in bundle/ (localcp/bundles.py)
	$(PY) -m localcp.bundles $(if $(VERSION),--version $(VERSION))

molecule: install ## molecule: the local scenario end to end, and syntax of default and kind
	cd $(ROOT) && molecule syntax -s default && molecule syntax -s kind
	$(NETNS) --once molecule molecule test -s local
