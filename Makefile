# Cocoon host. `make run` needs only Go; `make test` is what CI runs (.ci/run) and
# installs the rest itself (scripts/test-deps.sh); `make plugins` builds every example
# module from source; `make build` leaves bin/cocoon-host and bin/cocoon, `make install`
# puts them and the systemd unit under DESTDIR/PREFIX.

GO        ?= go
CLANG     ?= clang-14
WAT2WASM  ?= wat2wasm
# Debian's rustc (apt: rustc libstd-rust-dev-wasm32), named by path so that a rustup
# toolchain earlier on PATH cannot change the bytes.
RUSTC     ?= /usr/bin/rustc

# Reproducible module builds: the same source gives the same sha256 on any machine, so a
# reviewer can rebuild a module and compare its hash with the one a host serves.
GO_WASM_FLAGS = -trimpath -buildmode=c-shared -ldflags=-buildid=
C_WASM_FLAGS  = --target=wasm32 -O2 -nostdlib -ffreestanding -fno-builtin-memcpy \
                -Wall -Wextra -Werror -Iplugins/c-sdk \
                -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536
# Rust guests: std only (no crates, no registry). rustc writes source paths into panic
# messages: the rule passes a relative one, and the remapping keeps the checkout's
# location out even if a path is made absolute, so the bytes do not depend on it.
RUST_WASM_FLAGS = --edition 2021 --crate-type cdylib --target wasm32-unknown-unknown \
                  -C opt-level=2 -C codegen-units=1 -C debuginfo=0 -C strip=symbols \
                  --remap-path-prefix=$(CURDIR)=.

GO_PLUGINS  := $(patsubst %/,%,$(dir $(wildcard plugins/*/go/main.go)))
C_PLUGINS   := $(patsubst %/,%,$(dir $(wildcard plugins/*/c/*.c)))
AS_PLUGINS  := $(patsubst %/assembly/index.ts,%,$(wildcard plugins/*/as/assembly/index.ts))
RUST_PLUGINS := $(patsubst %/lib.rs,%,$(wildcard plugins/*/rust/lib.rs))
WAT_SOURCES := $(wildcard host/testdata/*.wat host/testdata/hostile/*.wat plugins/*/wat/*.wat)

# plugins/NAME/LANG/NAME.wasm
plugin_out = $(1)/$(notdir $(patsubst %/,%,$(dir $(1)))).wasm

GO_WASM  := $(foreach d,$(GO_PLUGINS),$(call plugin_out,$(d)))
C_WASM   := $(foreach d,$(sort $(C_PLUGINS)),$(call plugin_out,$(d)))
AS_WASM  := $(foreach d,$(AS_PLUGINS),$(call plugin_out,$(d)))
RUST_WASM := $(foreach d,$(RUST_PLUGINS),$(call plugin_out,$(d)))
WAT_WASM := $(WAT_SOURCES:.wat=.wasm)

.PHONY: all build install plugins page contracts contracts-check committed-check run test test-deps bench fuzz vet clean

all: build plugins

# The binaries embed the reviewer's page, verifier included (web/page). `make build`
# compiles every package and leaves the two programs in bin/.
build: page
	$(GO) build ./...
	$(GO) build -trimpath -o bin/ ./cmd/cocoon-host ./cmd/cocoon

# `make install` (PREFIX=/usr/local, DESTDIR for packagers) installs the two programs and
# the systemd unit (dist/cocoon-host.service), whose ExecStart names BINDIR.
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
install: build
	install -D -m 0755 bin/cocoon-host $(DESTDIR)$(BINDIR)/cocoon-host
	install -D -m 0755 bin/cocoon $(DESTDIR)$(BINDIR)/cocoon
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|/usr/local/bin/cocoon-host|$(BINDIR)/cocoon-host|' dist/cocoon-host.service > $(DESTDIR)$(SYSTEMDUNITDIR)/cocoon-host.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/cocoon-host.service

# The host binary, reproducibly: the same source and toolchain give the same bytes in any
# checkout (scripts/build-host.sh fixes every setting that changes them). HOST_GO_VERSION is
# the Go release the published host is built with; the script refuses another.
HOST_GO_VERSION := go1.26.8
.PHONY: host
host:
	GO=$(GO) HOST_GO_VERSION=$(HOST_GO_VERSION) scripts/build-host.sh bin/cocoon-host

plugins: $(GO_WASM) $(C_WASM) $(AS_WASM) $(RUST_WASM) $(WAT_WASM)

# Go guests depend on the SDK too, so rebuild them when anything Go changes. Built in
# their directory, so that a module made by `cocoon init`, which has its own go.mod and
# SDK copy, builds here as it does anywhere (the bytes do not depend on the directory).
GO_SOURCES := $(shell find abi plugins -name '*.go' -not -name '*_test.go') go.mod
$(GO_WASM): $(GO_SOURCES)
	cd $(dir $@) && GOOS=wasip1 GOARCH=wasm $(GO) build $(GO_WASM_FLAGS) -o $(notdir $@) .

.SECONDEXPANSION:
$(C_WASM): $$(wildcard $$(dir $$@)*.c) $$(wildcard $$(dir $$@)*.h) $(wildcard plugins/c-sdk/*.h)
	$(CLANG) $(C_WASM_FLAGS) -o $@ $(filter %.c,$^)

# AssemblyScript guests: the compiler (assemblyscript, pinned) is installed from each
# module's lock file; the SDK (plugins/as-sdk) is linked, so SDK changes rebuild them.
AS_SDK := $(wildcard plugins/as-sdk/*.ts) plugins/as-sdk/asconfig.json
$(AS_WASM): $$(dir $$@)node_modules/.package-lock.json $$(dir $$@)asconfig.json $$(wildcard $$(dir $$@)assembly/*.ts) $(AS_SDK)
	npm run --silent --prefix $(dir $@) build

plugins/%/as/node_modules/.package-lock.json: plugins/%/as/package.json plugins/%/as/package-lock.json
	npm ci --prefix $(dir $(@D)) --no-audit --no-fund --prefer-offline

$(RUST_WASM): $$(dir $$@)lib.rs
	@test -x $(RUSTC) -a -d /usr/lib/rustlib/wasm32-unknown-unknown || { echo "make plugins: $@ needs Debian's rustc and its wasm32 std: apt-get install rustc libstd-rust-dev-wasm32 (make test does)"; exit 1; }
	$(RUSTC) $(RUST_WASM_FLAGS) -o $@ $<

%.wasm: %.wat
	$(WAT2WASM) -o $@ $<

# Built modules that `make run` needs and only a toolchain other than Go can build are
# committed, so that `make run` needs Go alone: the example pipeline's output-guard (C).
# Go modules are built by `make run` itself. committed-check rebuilds them from source
# (`make test` runs it) and fails if the bytes differ from the committed ones.
COMMITTED_WASM := plugins/output-guard/c/output-guard.wasm
committed-check:
	$(MAKE) --no-print-directory -B $(COMMITTED_WASM)
	@git ls-files --error-unmatch $(COMMITTED_WASM) >/dev/null && git diff --quiet -- $(COMMITTED_WASM) || { echo "committed-check: $(COMMITTED_WASM) is not what its source builds to: commit the rebuilt file (git diff shows it)"; exit 1; }

# The reviewer's page (web/page): its verifier, the Go verifier compiled to WebAssembly
# with Go's wasm_exec.js, built reproducibly into web/page/dist (not committed), which
# cocoon-host and cocoon embed. Built before the binaries that serve it.
PAGE_DIR     := web/page
# Every package of this module the browser verifier is built from, as the go command sees it.
PAGE_PACKAGES := $(shell GOOS=js GOARCH=wasm $(GO) list -deps -f '{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}' ./$(PAGE_DIR)/verifier/wasm)
PAGE_SOURCES := $(filter-out %_test.go,$(wildcard $(addsuffix /*.go,$(PAGE_PACKAGES)))) go.mod go.sum $(PAGE_DIR)/build.sh
page: $(PAGE_DIR)/dist/verifier.wasm
$(PAGE_DIR)/dist/verifier.wasm: $(PAGE_SOURCES)
	GO=$(GO) sh $(PAGE_DIR)/build.sh

PAGE_E2E := $(PAGE_DIR)/e2e
# playwright-core, which drives Debian's chromium in cmd/cocoon/web_test.go, installed
# from its lock file (it downloads no browser).
$(PAGE_E2E)/node_modules/.package-lock.json: $(PAGE_E2E)/package.json $(PAGE_E2E)/package-lock.json
	npm ci --prefix $(PAGE_E2E) --no-audit --no-fund

MINIAPP_DIR := web/miniapp
# The sample Mini App's test driver (cmd/cocoon/miniapp_test.go) and the pinned
# @tonconnect/ui whose browser build the app serves (committed; TestVendoredTonConnect
# compares it), each installed from its lock file.
$(MINIAPP_DIR)/e2e/node_modules/.package-lock.json: $(MINIAPP_DIR)/e2e/package.json $(MINIAPP_DIR)/e2e/package-lock.json
	npm ci --prefix $(MINIAPP_DIR)/e2e --no-audit --no-fund
$(MINIAPP_DIR)/vendor/node_modules/.package-lock.json: $(MINIAPP_DIR)/vendor/package.json $(MINIAPP_DIR)/vendor/package-lock.json
	npm ci --prefix $(MINIAPP_DIR)/vendor --no-audit --no-fund
# Copies the pinned @tonconnect/ui's browser build into the app (after a version bump).
.PHONY: miniapp-vendor
miniapp-vendor: $(MINIAPP_DIR)/vendor/node_modules/.package-lock.json
	cp $(MINIAPP_DIR)/vendor/node_modules/@tonconnect/ui/dist/tonconnect-ui.min.js $(MINIAPP_DIR)/static/

# The main job: start the host with the embedded model and the example pipeline. It
# prints where the API key is and a ready-to-paste curl line. It needs Go only: it builds
# the Go example module (pii-redactor) and uses the committed C one (COMMITTED_WASM).
DATA ?= .cocoon
# The model: COCOON_MODEL_DIR if set, else the shared test model beside the repository,
# else `cocoon-host model pull` downloads it into $(DATA).
MODEL_DIR ?= $(or $(COCOON_MODEL_DIR),$(wildcard ../shared/models/stories260K))
# LISTEN (host:port) overrides serve's default address, 127.0.0.1:8080.
LISTEN ?=
RUN_WASM := plugins/pii-redactor/go/pii-redactor.wasm
run: $(RUN_WASM) page
	$(if $(MODEL_DIR),,$(GO) run ./cmd/cocoon-host model pull --data $(DATA))
	$(GO) run ./cmd/cocoon-host serve --data $(DATA) $(if $(MODEL_DIR),--model-dir $(MODEL_DIR)) $(if $(LISTEN),--listen $(LISTEN))

SDK_DIR := web/testdata/openai-sdk
# The OpenAI SDK client of web/openai_sdk_test.go, installed from its lock file.
$(SDK_DIR)/node_modules/.package-lock.json: $(SDK_DIR)/package.json $(SDK_DIR)/package-lock.json
	npm ci --prefix $(SDK_DIR) --no-audit --no-fund

# web/e2e's shared test vectors, checked on the browser client library as built: no
# packages of its own (the bundle holds @hpke/core).
E2E_JS := web/e2e/js

# The browser client library (web/browser): dist/cocoon.js is bundled by esbuild from
# src/ and the packages of its lock file, and committed, so that `make run` and a Go
# build need no Node. `make browser` rebuilds it; browser-check (`make test` runs it)
# rebuilds it in memory and fails if the committed bytes differ.
BROWSER_DIR := web/browser
$(BROWSER_DIR)/node_modules/.package-lock.json: $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund
.PHONY: browser browser-check
browser: $(BROWSER_DIR)/node_modules/.package-lock.json
	npm run --silent --prefix $(BROWSER_DIR) build
browser-check: $(BROWSER_DIR)/node_modules/.package-lock.json
	npm run --silent --prefix $(BROWSER_DIR) check

CONTRACTS_DIR := settle/contracts
# The Tolk compiler and @ton/sandbox, installed from the lock file.
$(CONTRACTS_DIR)/node_modules/.package-lock.json: $(CONTRACTS_DIR)/package.json $(CONTRACTS_DIR)/package-lock.json
	npm ci --prefix $(CONTRACTS_DIR) --no-audit --no-fund

# Compiles the contracts (settle/contracts/escrow.tolk, registry.tolk) into the committed
# settle/contracts/build/*.boc that the Go code embeds.
contracts: $(CONTRACTS_DIR)/node_modules/.package-lock.json
	npm run --prefix $(CONTRACTS_DIR) build

# Fails if the committed BOC is not what the source compiles to.
contracts-check: $(CONTRACTS_DIR)/node_modules/.package-lock.json
	npm run --prefix $(CONTRACTS_DIR) check

# make test first installs what it needs beyond Go (scripts/test-deps.sh), then runs the
# suite in a second make, whose rules then find the tools they call.
test: test-deps
	$(MAKE) --no-print-directory test-suite

test-deps:
	scripts/test-deps.sh

.PHONY: test-suite
test-suite: plugins page vet contracts-check committed-check browser-check $(SDK_DIR)/node_modules/.package-lock.json $(PAGE_E2E)/node_modules/.package-lock.json $(MINIAPP_DIR)/e2e/node_modules/.package-lock.json $(MINIAPP_DIR)/vendor/node_modules/.package-lock.json
	npm test --prefix $(CONTRACTS_DIR)
	npm test --prefix $(E2E_JS)
	# -timeout: go test's default of 10 minutes per package is what cmd/cocoon's
	# browser and README tests take on a 2-core machine under other load; a hang still
	# fails inside CI's half hour.
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -race -count=1 -timeout 15m ./host/ ./host/internal/jsonscan/ ./host/backend/openai/ ./host/backend/embedded/ ./web/ ./settle/... ./internal/fstrace/
	GO=$(GO) scripts/demo-billing.sh

# Billing end to end on a local TON network (cocoon-host devnet), through the real
# binaries: escrow, chats with receipts, settlement, withdrawal; the README's "Trying
# billing locally" steps. Exits 0 with a one-line summary.
.PHONY: demo-billing
demo-billing:
	GO=$(GO) scripts/demo-billing.sh

vet:
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./abi/guest/... $(addprefix ./,$(filter-out $(patsubst %/go.mod,%,$(wildcard plugins/*/go/go.mod)),$(GO_PLUGINS)))

# Per-request pipeline overhead and billing; figures go in README.md.
bench: plugins
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./plugins/ ./host/... ./settle/...

# Every fuzz target in the repository, discovered by scripts/fuzz.sh, each for FUZZTIME
# (default a minute): `FUZZTIME=10s make fuzz` for a quick pass. Seeds include the built
# modules.
FUZZTIME ?= 60s
fuzz: plugins
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# clean keeps the committed modules (COMMITTED_WASM).
clean:
	rm -rf bin
	rm -f $(GO_WASM) $(filter-out $(COMMITTED_WASM),$(C_WASM)) $(AS_WASM) $(RUST_WASM) $(WAT_WASM) $(PAGE_DIR)/dist/verifier.wasm $(PAGE_DIR)/dist/wasm_exec.js
	rm -rf $(SDK_DIR)/node_modules $(CONTRACTS_DIR)/node_modules $(PAGE_E2E)/node_modules $(BROWSER_DIR)/node_modules $(MINIAPP_DIR)/e2e/node_modules $(MINIAPP_DIR)/vendor/node_modules $(PAGE_DIR)/build $(addsuffix /node_modules,$(AS_PLUGINS))
