# Cocoon host. `make test` is what CI runs (.ci/run); `make plugins` builds every
# example module from source.

GO        ?= go
CLANG     ?= clang-14
WAT2WASM  ?= wat2wasm

# Reproducible module builds: the same source gives the same sha256 on any machine, so a
# reviewer can rebuild a module and compare its hash with the one a host serves.
GO_WASM_FLAGS = -trimpath -buildmode=c-shared -ldflags=-buildid=
C_WASM_FLAGS  = --target=wasm32 -O2 -nostdlib -ffreestanding -fno-builtin-memcpy \
                -Wall -Wextra -Werror -Iplugins/c-sdk \
                -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536

GO_PLUGINS  := $(patsubst %/,%,$(dir $(wildcard plugins/*/go/main.go)))
C_PLUGINS   := $(patsubst %/,%,$(dir $(wildcard plugins/*/c/*.c)))
WAT_SOURCES := $(wildcard host/testdata/*.wat host/testdata/hostile/*.wat plugins/*/wat/*.wat)

# plugins/NAME/LANG/NAME.wasm
plugin_out = $(1)/$(notdir $(patsubst %/,%,$(dir $(1)))).wasm

GO_WASM  := $(foreach d,$(GO_PLUGINS),$(call plugin_out,$(d)))
C_WASM   := $(foreach d,$(sort $(C_PLUGINS)),$(call plugin_out,$(d)))
WAT_WASM := $(WAT_SOURCES:.wat=.wasm)

.PHONY: all build plugins page contracts contracts-check run test bench fuzz vet clean

all: build plugins

# The binaries embed the reviewer's page, verifier included (web/page).
build: page
	$(GO) build ./...

# The host binary, reproducibly: the same source and toolchain give the same bytes in any
# checkout (scripts/build-host.sh fixes every setting that changes them). HOST_GO_VERSION is
# the Go release the published host is built with; the script refuses another.
HOST_GO_VERSION := go1.26.8
.PHONY: host
host:
	GO=$(GO) HOST_GO_VERSION=$(HOST_GO_VERSION) scripts/build-host.sh bin/cocoon-host

plugins: $(GO_WASM) $(C_WASM) $(WAT_WASM)

# Go guests depend on the SDK too, so rebuild them when anything Go changes.
GO_SOURCES := $(shell find abi plugins -name '*.go' -not -name '*_test.go') go.mod
$(GO_WASM): $(GO_SOURCES)
	GOOS=wasip1 GOARCH=wasm $(GO) build $(GO_WASM_FLAGS) -o $@ ./$(dir $@)

.SECONDEXPANSION:
$(C_WASM): $$(wildcard $$(dir $$@)*.c) $$(wildcard $$(dir $$@)*.h) $(wildcard plugins/c-sdk/*.h)
	$(CLANG) $(C_WASM_FLAGS) -o $@ $(filter %.c,$^)

%.wasm: %.wat
	$(WAT2WASM) -o $@ $<

# The reviewer's page (web/page): its verifier, the Go verifier compiled to WebAssembly
# with Go's wasm_exec.js, built reproducibly into web/page/dist (not committed), which
# cocoon-host and cocoon embed. Built before the binaries that serve it.
PAGE_DIR     := web/page
PAGE_SOURCES := $(shell find attest $(PAGE_DIR)/verifier -name '*.go' -not -name '*_test.go') go.mod go.sum $(PAGE_DIR)/build.sh
page: $(PAGE_DIR)/dist/verifier.wasm
$(PAGE_DIR)/dist/verifier.wasm: $(PAGE_SOURCES)
	GO=$(GO) sh $(PAGE_DIR)/build.sh

PAGE_E2E := $(PAGE_DIR)/e2e
# playwright-core, which drives Debian's chromium in cmd/cocoon/web_test.go, installed
# from its lock file (it downloads no browser).
$(PAGE_E2E)/node_modules/.package-lock.json: $(PAGE_E2E)/package.json $(PAGE_E2E)/package-lock.json
	npm ci --prefix $(PAGE_E2E) --no-audit --no-fund

# The main job: build the example modules and start the host with the embedded model and
# the example pipeline. It prints the API key and a ready-to-paste curl line.
DATA ?= .cocoon
# The model: COCOON_MODEL_DIR if set, else the shared test model beside the repository,
# else `cocoon-host model pull` downloads it into $(DATA).
MODEL_DIR ?= $(or $(COCOON_MODEL_DIR),$(wildcard ../shared/models/stories260K))
run: plugins page
	$(if $(MODEL_DIR),,$(GO) run ./cmd/cocoon-host model pull --data $(DATA))
	$(GO) run ./cmd/cocoon-host serve --data $(DATA) $(if $(MODEL_DIR),--model-dir $(MODEL_DIR))

SDK_DIR := web/testdata/openai-sdk
# The OpenAI SDK client of web/openai_sdk_test.go, installed from its lock file.
$(SDK_DIR)/node_modules/.package-lock.json: $(SDK_DIR)/package.json $(SDK_DIR)/package-lock.json
	npm ci --prefix $(SDK_DIR) --no-audit --no-fund

CONTRACTS_DIR := contracts
# The Tolk compiler and @ton/sandbox, installed from the lock file.
$(CONTRACTS_DIR)/node_modules/.package-lock.json: $(CONTRACTS_DIR)/package.json $(CONTRACTS_DIR)/package-lock.json
	npm ci --prefix $(CONTRACTS_DIR) --no-audit --no-fund

# Compiles the escrow contract (contracts/escrow.tolk) into the committed
# contracts/build/escrow.boc that the Go code embeds.
contracts: $(CONTRACTS_DIR)/node_modules/.package-lock.json
	npm run --prefix $(CONTRACTS_DIR) build

# Fails if the committed BOC is not what the source compiles to.
contracts-check: $(CONTRACTS_DIR)/node_modules/.package-lock.json
	npm run --prefix $(CONTRACTS_DIR) check

test: plugins page vet contracts-check $(SDK_DIR)/node_modules/.package-lock.json $(PAGE_E2E)/node_modules/.package-lock.json
	npm test --prefix $(CONTRACTS_DIR)
	$(GO) test -count=1 ./...
	$(GO) test -race -count=1 ./host/ ./host/internal/jsonscan/ ./host/backend/openai/ ./host/backend/embedded/ ./web/ ./settle/... ./internal/fstrace/
	GO=$(GO) scripts/demo-billing.sh

# Billing end to end on a local TON network (cocoon-host devnet), through the real
# binaries: escrow, chats with receipts, settlement, withdrawal; the README's "Trying
# billing locally" steps. Exits 0 with a one-line summary.
.PHONY: demo-billing
demo-billing:
	GO=$(GO) scripts/demo-billing.sh

vet:
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./abi/guest/... $(addprefix ./,$(GO_PLUGINS))

# Per-request pipeline overhead and billing; figures go in README.md.
bench: plugins
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./plugins/ ./host/... ./settle/...

# Every fuzz target in the repository, discovered by scripts/fuzz.sh, each for FUZZTIME
# (default a minute): `FUZZTIME=10s make fuzz` for a quick pass. Seeds include the built
# modules.
FUZZTIME ?= 60s
fuzz: plugins
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

clean:
	rm -f $(GO_WASM) $(C_WASM) $(WAT_WASM) $(PAGE_DIR)/dist/verifier.wasm $(PAGE_DIR)/dist/wasm_exec.js
	rm -rf $(SDK_DIR)/node_modules $(CONTRACTS_DIR)/node_modules $(PAGE_E2E)/node_modules $(PAGE_DIR)/build
