# smtp-gateway — every task a developer or CI runs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The pinned Node.js (.nvmrc, installed by `make deps`) comes first, so every target and every
# process a test starts runs on it, whatever Node.js the machine has.
export PATH := $(CURDIR)/.tools/node/bin:$(CURDIR)/.tools/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export HELM_PLUGINS := $(CURDIR)/.tools/helm-plugins

CHART := charts/smtp-gateway
RESULTS := .test-results
# vitest with a JSON report per area, which `make test` adds up at the end.
VITEST = vitest run --reporter=default --reporter=json --outputFile.json=$(RESULTS)/$(1).json $(2)
VERSION := $(shell node -p "require('./package.json').version")
# The image make test-cluster builds from gateway/Dockerfile and loads into the test cluster's node.
CLUSTER_IMAGE := localhost/smtp-gateway:e2e
CLUSTER_IMAGE_ARCHIVE := .tools/images/smtp-gateway-e2e.oci.tar
CLUSTER_LOCK := /tmp/smtp-gateway-test-cluster.lock

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  %-20s %s\n", $$1, $$2}'

.PHONY: setup
setup: deps tools ## Install everything: npm packages, Debian test peers, pinned tools

.PHONY: deps
deps: ## The pinned Node.js (.nvmrc) into .tools/, then npm ci (only when package-lock.json changed)
	@scripts/install-node.sh
	@if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; else echo "deps: node_modules up to date"; fi

.PHONY: tools
tools: ## Install pinned helm, helm-unittest, validators and the Debian test peers
	scripts/install-system-packages.sh
	scripts/install-tools.sh

.PHONY: synth
synth: ## Synthesise charts/smtp-gateway from synth/
	tsx synth/main.ts

.PHONY: build
build: ## Compile the gateway to dist/
	tsc -p tsconfig.build.json

.PHONY: run
run: ## Run the gateway locally (SMTP 127.0.0.1:2525, ops 127.0.0.1:9090, dev upstream that delivers nothing)
	SMTPGW_DEV_UPSTREAM__ENABLED=true tsx gateway/src/main.ts

.PHONY: hash-password
hash-password: ## Print a users-file line for SMTP AUTH: make hash-password SMTP_USER=app1 (password from stdin)
	@tsx gateway/src/cli/hash-password.ts $(if $(SMTP_USER),'$(SMTP_USER)',--help)

.PHONY: lint
lint: ## Type-check, shellcheck, yamllint, helm lint
	tsc --noEmit -p tsconfig.json
	shellcheck -x scripts/*.sh scripts/lib/*.sh scripts/test/fixtures/*.sh .ci/run
	actionlint
	yamllint --strict -c .yamllint.yaml eksctl/ .github/
	$(MAKE) --no-print-directory lint-chart

.PHONY: lint-chart
lint-chart: ## yamllint the overlays and chart metadata; helm lint --strict with each ci/*-values.yaml and overlay
	yamllint --strict -c .yamllint.yaml values/ $(CHART)/Chart.yaml $(CHART)/values.yaml $(CHART)/tests/ $(CHART)/ci/
	for values in $(CHART)/ci/*-values.yaml values/staging.yaml values/prod.yaml; do \
	  helm lint --strict $(CHART) --kube-version 1.28.0 --values $$values; \
	done

.PHONY: test
test: ## Run every test (the CI command); ends with one line adding up every suite
	rm -rf $(RESULTS)
	$(MAKE) --no-print-directory lint test-gateway test-chart test-ship test-prove test-cluster
	node scripts/test-summary.mjs $(RESULTS)

.PHONY: test-gateway
test-gateway: ## Gateway suites: real SMTP over loopback
	$(call VITEST,gateway,gateway/test)

.PHONY: test-chart
test-chart: ## Chart suites: helm bridge, helm-unittest, helm lint, schema validation, synth drift
	$(call VITEST,chart,synth/test)
	helm unittest --strict --output-type JUnit --output-file $(RESULTS)/helm-unittest.xml $(CHART)

.PHONY: test-ship
test-ship: ## Image, cluster definitions and deploy scripts
	$(call VITEST,ship,scripts/test)

.PHONY: test-prove
test-prove: ## Short fault-injection scenarios and hostile input
	$(call VITEST,prove,bench/test)

.PHONY: test-cluster
test-cluster: ## The chart, the image and mail on a real Kubernetes built here (root; part of make test)
	@# Missing prerequisites stop the run naming them: a skipped suite would pass CI without proving anything.
	@[ "$$(id -u)" -eq 0 ] || { echo "make test-cluster: must run as root (kubelet, containerd, iptables, buildah)" >&2; exit 1; }
	scripts/install-system-packages.sh --check
	scripts/install-cluster-tools.sh
	scripts/build-cluster-image.sh $(CLUSTER_IMAGE) $(CLUSTER_IMAGE_ARCHIVE)
	@# The cluster's addresses, interfaces and state folder are the machine's, not the work tree's:
	@# one run at a time on a machine, the next waits (at most 30 minutes).
	flock --wait 1800 $(CLUSTER_LOCK) $(MAKE) --no-print-directory test-cluster-locked

.PHONY: test-cluster-locked
test-cluster-locked:
	scripts/test-cluster.sh down
	trap 'scripts/test-cluster.sh down' EXIT; \
	  scripts/test-cluster.sh up; \
	  scripts/test-cluster.sh import $(CLUSTER_IMAGE_ARCHIVE) $(CLUSTER_IMAGE); \
	  CLUSTER_IMAGE=$(CLUSTER_IMAGE) CLUSTER_IMAGE_ARCHIVE=$(CLUSTER_IMAGE_ARCHIVE) $(call VITEST,cluster,--config e2e/vitest.config.ts)
	scripts/test-cluster.sh check-clean

.PHONY: test-faults
test-faults: ## Fault injection under load: each scenario 10 s+ at C >= 20 (not part of make test)
	tsx bench/faults.ts

.PHONY: bench
bench: build ## Throughput benchmark against smtp-sink, Haraka side by side: the matrix, median of 3 runs (not part of make test)
	scripts/install-haraka.sh
	tsx bench/run.ts --runs=3

.PHONY: package
package: ## Package the chart to dist/smtp-gateway-VERSION.tgz
	mkdir -p dist
	helm package $(CHART) --destination dist

.PHONY: kubeconfig-staging
kubeconfig-staging: ## Point kubectl at the staging EKS cluster (smtp-gateway-staging)
	scripts/deploy.sh staging kubeconfig

.PHONY: kubeconfig-prod
kubeconfig-prod: ## Point kubectl at the production EKS cluster (smtp-gateway-prod)
	scripts/deploy.sh production kubeconfig

.PHONY: clean
clean: ## Remove build output
	rm -rf dist
