# bakery — see README.md. The two entry points on a fresh Debian machine are
# `make run` and `make test`.

SHELL   := /bin/sh
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/.local/go/bin:/usr/sbin:/sbin
# Fetch a newer Go toolchain through the module proxy if the installed one is older than go.mod asks.
export GOTOOLCHAIN ?= auto

GO      ?= go
BIN     := bin/bakery
OUT     := output
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
SOURCES := $(shell find cmd internal client -name '*.go' 2>/dev/null) go.mod go.sum

.PHONY: run test test-integration bench build deps test-deps vet fuzz clean

## run: install what is missing, build, and run the main job on the built-in default:
## build examples/demo.hcl from the offline demo base, then inspect and audit the result
run: deps $(BIN) $(OUT)/demo-base.img
	$(BIN) build examples/demo.hcl
	$(BIN) inspect $(OUT)/demo.img
	$(BIN) audit $(OUT)/demo.img

# The demo base only changes when its generator does.
$(OUT)/demo-base.img: internal/demo/demo.go internal/demo/tree.go | $(BIN)
	@mkdir -p $(OUT)
	$(BIN) demo-base $@

## test: the whole test suite (unit, oracle and end-to-end tests)
test: test-deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || { echo "gofmt needed:"; gofmt -l cmd internal; exit 1; }
	$(GO) test -count=1 -timeout 15m ./...

## test-integration: bakery's cluster configs with Consul's and Vault's own loaders, and the
## credential broker against a real Vault core (separate modules in integration/; see its README)
test-integration:
	@for m in integration/consul integration/vault; do echo "== $$m"; (cd $$m && $(GO) test -count=1 ./...) || exit 1; done

## bench: the benchmark scripts; results go to docs/BENCHMARKS.md by hand
bench: $(BIN)
	@for s in bench/*.sh; do echo "== $$s"; sh $$s || exit 1; done

build: $(BIN)

$(BIN): $(SOURCES)
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/bakery

deps:
	@scripts/ensure-deps.sh run

test-deps:
	@scripts/ensure-deps.sh test

vet:
	$(GO) vet ./...

## fuzz: run every fuzz target for FUZZTIME each (default 30s). A run that fails with
## "context deadline exceeded" and writes no failing input is Go's fuzz coordinator race
## at the end of -fuzztime (go.dev/issue/75804, fixed in Go 1.27), not a finding.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$t"; \
			out=$$($(GO) test -run XXX -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg 2>&1) && { echo "$$out" | tail -n 1; continue; }; \
			if echo "$$out" | grep -q 'Failing input written' || ! echo "$$out" | grep -q 'context deadline exceeded'; then echo "$$out"; exit 1; fi; \
			echo "   (go.dev/issue/75804: deadline race at the end of -fuzztime, no failing input; ignored)"; \
		done; \
	done

clean:
	rm -rf bin $(OUT)
