# Vessel: VMs as Kubernetes API objects. `make help` lists the targets.
SHELL := /bin/bash
BIN := _output/bin
GO_TEST_FLAGS ?=
# Every package but the end-to-end suites. Run with -short, their tests need
# nothing but Go (and an in-process etcd): node-agent's tests that need
# libvirtd or a guest skip under -short and run in test-e2e.
UNIT_PKGS = $(shell go list ./... | grep -v -e '/e2e/' -e '/e2e$$')

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build vessel-apiserver, vessel-agent, kubectl-vm, vessel-up and vessel-reaper into _output/bin.
	go build -ldflags "-s -w" -o $(BIN)/ ./cmd/...

# Where `make images` names the images and `make release` points
# install.yaml at; VERSION (default: from git, see hack/version.sh) tags them.
IMAGE_REGISTRY ?= ghcr.io/vessel-vm
export IMAGE_REGISTRY

.PHONY: images
images: ## OCI images of vessel-apiserver and vessel-agent, no daemon needed: _output/images (layouts, docker-archives, SBOMs).
	hack/build-images.sh

.PHONY: release
release: images ## kubectl-vm archives for linux/darwin amd64/arm64, checksums, krew manifest, install.yaml pinned by digest: _output/release.
	hack/release.sh

.PHONY: deps
deps: ## Install libvirt/QEMU and build kube-apiserver, etcd and the test guest (cached).
	hack/install-libvirt.sh
	hack/build-kubernetes.sh
	hack/build-etcd.sh
	hack/build-guest.sh
	install -D -m 0644 -t /var/lib/vessel/images/vessel-guest _output/guest/vmlinuz _output/guest/initrd.img _output/guest/disk.img

.PHONY: prometheus
prometheus: ## Build Prometheus and promtool (hack/tools/prometheus) into _output/bin for e2e/metrics (cached).
	hack/build-prometheus.sh

# UP_FLAGS=--from-images (after make images) runs the vessel-apiserver
# from its image's root filesystem.
UP_FLAGS ?=

.PHONY: up
up: deps build ## Set everything up and start the local control plane and two hypervisors, supervised (again: starts only what is missing).
	$(BIN)/vessel-up $(UP_FLAGS)

.PHONY: down
down: ## Stop what `make up` started: the supervisor first, then the components (guests keep running).
	@if [ -x $(BIN)/vessel-up ]; then $(BIN)/vessel-up --down; else echo "nothing to stop"; fi

.PHONY: destroy
destroy: ## Stop everything, then kill the guests and remove the hypervisors' namespaces (files stay in .vessel).
	@if [ -x $(BIN)/vessel-up ]; then $(BIN)/vessel-up --destroy; else echo "nothing to destroy"; fi

.PHONY: status
status: ## Show the supervisor and each component of `make up`: state, pid, restarts, last exit.
	@if [ -x $(BIN)/vessel-up ]; then $(BIN)/vessel-up --status; else echo "not built: run make up"; exit 1; fi

.PHONY: generate
generate: ## Regenerate clients, listers, informers, apply configurations, OpenAPI, deepcopy.
	hack/update-codegen.sh

.PHONY: verify-generated
verify-generated: ## Fail if generated code is stale (generators run on an empty module cache, as on a new machine).
	hack/verify-codegen.sh --fresh-module-cache

.PHONY: verify-tidy
verify-tidy: ## Fail if `go mod tidy` would change go.mod/go.sum (Vessel's and hack/tools').
	hack/verify-tidy.sh

.PHONY: vet
vet: ## gofmt and go vet every package.
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "not gofmt'ed: $$unformatted" >&2; exit 1; fi
	go vet ./...

.PHONY: test-unit
test-unit: ## Unit and integration tests (real embedded etcd, in-process apiserver; no libvirtd, no guests).
	go test -short $(GO_TEST_FLAGS) $(UNIT_PKGS)
	GOWORK=off go -C hack/tools/images test -short $(GO_TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Fuzz decoding + validation, and the qcow2 header parser, for a few seconds.
	go test -run '^$$' -fuzz FuzzDecodeAndValidate -fuzztime 10s ./apis/vessel/validation/
	go test -run '^$$' -fuzz FuzzReadQCOW2Header -fuzztime 10s ./node-agent/disks/

.PHONY: test-e2e
test-e2e: deps prometheus build ## End-to-end tests: real kube-apiserver, kubectl, libvirt and guests.
	# One package at a time: each runs libvirtds and guests of its own, on 2 cores.
	VESSEL_E2E=1 go test -p 1 $(GO_TEST_FLAGS) -timeout 40m ./e2e/... ./node-agent/...

.PHONY: test
test: verify-generated verify-tidy vet test-unit fuzz test-e2e ## Everything CI runs.

.PHONY: bench
bench: ## API benchmarks against the embedded etcd.
	go test -run '^$$' -bench . -benchmem ./test/integration/

.PHONY: bench-api
bench-api: deps build ## Through kube-apiserver: Vessel's aggregated API vs a CRD with the same schema.
	go run ./test/bench/apicrd $(BENCH_API_FLAGS)

# VMS, HYPERVISORS and RATE size bench-density; BENCH_DENSITY_FLAGS adds
# more (-profile DIR, -settle 15m, -agent-args "--sim-boot-latency=1s").
VMS ?= 10000
HYPERVISORS ?= 100
RATE ?= 100

.PHONY: bench-density
bench-density: deps build ## VMs created at RATE/s over HYPERVISORS simulated hypervisors: create->bound/Running p50/p95/p99, scheduler throughput, list time, RSS/CPU per 1,000 VMs.
	go run ./test/bench/density -vms $(VMS) -hypervisors $(HYPERVISORS) -rate $(RATE) $(BENCH_DENSITY_FLAGS)

.PHONY: bench-boot
bench-boot: deps build ## Create -> Running -> console banner vs plain QEMU; agent RSS/CPU with 0/10/20 guests.
	VESSEL_E2E=1 go test -run '^$$' -bench Boot -benchtime 1x -timeout 30m ./node-agent/bench/

.PHONY: bench-snapshot
bench-snapshot: deps build ## Snapshot and restore (with and without memory) through Vessel vs go-libvirt directly.
	VESSEL_E2E=1 go test -run '^$$' -bench Snapshot -benchtime 1x -timeout 30m ./node-agent/bench/

.PHONY: bench-clone
bench-clone: deps build ## Create -> first console output: cold boot vs memory clone vs warm pool (p50/p95, ratios).
	VESSEL_E2E=1 go test -run '^$$' -bench Clone -benchtime 1x -timeout 60m ./e2e/clone/
.PHONY: test-e2e-metrics
test-e2e-metrics: deps prometheus build ## Only e2e/metrics: kubectl vm top, RBAC, agent scrape auth, counters, promtool and a real Prometheus.
	VESSEL_E2E=1 go test $(GO_TEST_FLAGS) -timeout 20m ./e2e/metrics/

.PHONY: bench-metrics
bench-metrics: deps ## One scrape of an agent with 20 real guests vs the bare virConnectGetAllDomainStats call, as a ratio.
	VESSEL_E2E=1 go test -run '^$$' -bench Scrape -benchtime 1x -timeout 10m ./node-agent/bench/

.PHONY: test-e2e-network
test-e2e-network: deps build ## Only e2e/network: DHCP addresses, isolation, anti-spoofing, agent restart, port-forward.
	VESSEL_E2E=1 go test $(GO_TEST_FLAGS) -timeout 20m ./e2e/network/

.PHONY: bench-network
bench-network: deps build ## kubectl vm port-forward vs a direct TCP connection to the guest in its netns: RTT and throughput, ratios.
	VESSEL_E2E=1 go test -run '^$$' -bench Network -benchtime 1x -timeout 30m ./e2e/network/

.PHONY: bench-migration
bench-migration: deps build ## Live migration through Vessel vs libvirt directly between the same two libvirtds: time and downtime p50/p95, ratios; pages sent idle vs busy.
	VESSEL_E2E=1 go test -run '^$$' -bench Migration -benchtime 1x -timeout 30m ./e2e/migration/

.PHONY: bench-console
bench-console: deps build ## Console echo latency and throughput: libvirt stream vs agent vs kubectl path.
	VESSEL_E2E=1 go test -run '^$$' -bench Console -benchtime 1x -timeout 30m ./e2e/console/
