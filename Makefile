# bakery — see README.md. The two entry points on a fresh Debian machine are
# `make run` and `make test`.

SHELL   := /bin/sh
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin
# Fetch a newer Go toolchain through the module proxy if the installed one is older than go.mod asks.
export GOTOOLCHAIN ?= auto

GO      ?= go
BIN     := bin/bakery
OUT     := output
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
SOURCES := $(shell find cmd internal client -name '*.go' 2>/dev/null) go.mod go.sum

.PHONY: run test bench build deps test-deps vet fuzz clean

## run: install what is missing, build, and run the main job on the built-in default
run: deps $(BIN)
	@mkdir -p $(OUT)
	$(BIN) demo-base $(OUT)/demo-base.img
	$(BIN) inspect $(OUT)/demo-base.img

## test: the whole test suite (unit, oracle and end-to-end tests)
test: test-deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || { echo "gofmt needed:"; gofmt -l cmd internal; exit 1; }
	$(GO) test -count=1 -timeout 15m ./...

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

## fuzz: run every fuzz target for FUZZTIME each (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$t"; $(GO) test -run XXX -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin $(OUT)
