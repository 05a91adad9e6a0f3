# connvault: build, run and test.
#
#   make run            install what running needs, build, serve on $LEPTOS_SITE_ADDR
#                       (default 127.0.0.1:3000)
#   make test           install everything the tests need, then the whole suite
#                       (scripts/test.sh): Rust tests on SQLite and PostgreSQL, the API
#                       contract, then the Playwright browser tests
#   make build          debug build of the server and the wasm front end (scripts/build.sh)
#   make build-release  release build (wasm-opt from binaryen where it can be installed)
#   make test-rust      only the Rust tests and the API contract
#   make e2e            only the browser tests
#   make watch          live reload while editing (installs cargo-leptos 0.3.10 on first use)
#   make tools          install everything (scripts/tools.sh; `scripts/tools.sh run` for less)
#
# Nothing here needs cargo-leptos but `make watch`: scripts/build.sh builds with cargo and
# wasm-bindgen-cli.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# Where rustup puts cargo on a fresh machine (CARGO_HOME when it is set, as rustup does).
export PATH := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(PATH)

# Runtime configuration of the server (mirrors [[workspace.metadata.leptos]] in Cargo.toml).
LEPTOS_ENV_VARS := LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg LEPTOS_OUTPUT_NAME=connvault

.PHONY: tools build build-release run test test-rust e2e watch

tools:
	scripts/tools.sh test

build:
	scripts/tools.sh run
	scripts/build.sh

build-release:
	scripts/tools.sh run --release
	scripts/build.sh --release

run: build
	$(LEPTOS_ENV_VARS) LEPTOS_SITE_ADDR=$${LEPTOS_SITE_ADDR:-127.0.0.1:3000} exec ./target/debug/connvault serve

watch:
	scripts/tools.sh watch
	cargo leptos watch

test: tools
	scripts/test.sh all

test-rust: tools
	scripts/test.sh rust

e2e: tools
	scripts/test.sh e2e
