# connvault: build, run and test.
#
#   make tools          install what is missing (scripts/tools.sh)
#   make build          debug build of server + wasm front end (cargo leptos build)
#   make build-release  release build (needs wasm-opt: binaryen)
#   make run            build, then serve on $LEPTOS_SITE_ADDR (default 127.0.0.1:3000)
#   make test           the whole suite (scripts/test.sh): Rust tests on SQLite and
#                       PostgreSQL, then the Playwright browser tests
#   make test-rust      only the Rust tests
#   make e2e            only the browser tests

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(HOME)/.cargo/bin:$(PATH)

# Runtime configuration of the server built by cargo-leptos
# (mirrors [[workspace.metadata.leptos]] in Cargo.toml).
LEPTOS_ENV_VARS := LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg LEPTOS_OUTPUT_NAME=connvault

.PHONY: tools build build-release run test test-rust e2e

tools:
	scripts/tools.sh

build: tools
	cargo leptos build

build-release:
	scripts/tools.sh --release
	cargo leptos build --release

run: build
	$(LEPTOS_ENV_VARS) LEPTOS_SITE_ADDR=$${LEPTOS_SITE_ADDR:-127.0.0.1:3000} exec ./target/debug/connvault serve

test: tools
	scripts/test.sh all

test-rust: tools
	scripts/test.sh rust

e2e: tools
	scripts/test.sh e2e
