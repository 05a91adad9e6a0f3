#!/usr/bin/env bash
# Builds connvault with cargo alone (no cargo-leptos): the server binary and the WebAssembly
# front end, laid out as the server serves them.
#
#   scripts/build.sh [--release] [all|server|site]     (default: all)
#
# server: `cargo build -p app --features ssr --bin connvault` -> target/{debug,release}/connvault
#         (the same build `cargo test` makes for the CLI tests, so a test run leaves it ready).
# site:   the front end (`app` as a cdylib with feature hydrate) for wasm32-unknown-unknown,
#         wasm-bindgen (the exact CLI version Cargo.lock names) into target/site/pkg as
#         connvault.js + connvault_bg.wasm, style/main.css as pkg/connvault.css, and app/public.
#         With --release: the wasm-release profile, then wasm-opt -Oz where it is installed.
#
# The server finds them through LEPTOS_SITE_ROOT=target/site, LEPTOS_SITE_PKG_DIR=pkg and
# LEPTOS_OUTPUT_NAME=connvault, read when it starts (the Makefile sets them). Built this way
# LEPTOS_OUTPUT_NAME is not set at compile time, so Leptos asks for connvault_bg.wasm, the
# name wasm-bindgen gives; `cargo leptos watch` (optional, for live reload) also still works.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

RELEASE=0
WHAT=all
for arg in "$@"; do
  case "$arg" in
    --release) RELEASE=1 ;;
    all|server|site) WHAT="$arg" ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "usage: scripts/build.sh [--release] [all|server|site]" >&2; exit 2 ;;
  esac
done

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
SITE="$TARGET_DIR/site"

build_server() {
  if [ "$RELEASE" = 1 ]; then
    cargo build --release -p app --features ssr --bin connvault
  else
    cargo build -p app --features ssr --bin connvault
  fi
}

build_site() {
  local profile_args=() dir=debug
  if [ "$RELEASE" = 1 ]; then
    profile_args=(--profile wasm-release)
    dir=wasm-release
  fi
  cargo build -p app --lib --target wasm32-unknown-unknown --features hydrate "${profile_args[@]}"
  local wasm="$TARGET_DIR/wasm32-unknown-unknown/$dir/app.wasm"
  [ -f "$wasm" ] || { echo "build.sh: $wasm was not built" >&2; exit 1; }
  local want have
  want="$(lock_wasm_bindgen_version)"
  have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
  if [ "$have" != "$want" ]; then
    echo "build.sh: wasm-bindgen-cli $want is needed (have: ${have:-none}); run scripts/tools.sh" >&2
    exit 1
  fi
  # Written next to the site, then moved in, so a running server never serves half a build.
  local staging="$SITE/.pkg.new"
  rm -rf "$staging"
  mkdir -p "$staging"
  wasm-bindgen --target web --no-typescript --out-dir "$staging" --out-name connvault "$wasm"
  if [ "$RELEASE" = 1 ]; then
    if command -v wasm-opt >/dev/null 2>&1; then
      wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        "$staging/connvault_bg.wasm" -o "$staging/connvault_bg.wasm.opt"
      mv "$staging/connvault_bg.wasm.opt" "$staging/connvault_bg.wasm"
    else
      echo "build.sh: wasm-opt not found (binaryen): the release front end is not size-optimised" >&2
    fi
  fi
  cp style/main.css "$staging/connvault.css"
  cp -R app/public/. "$SITE/"
  rm -rf "$SITE/pkg.old"
  [ -d "$SITE/pkg" ] && mv "$SITE/pkg" "$SITE/pkg.old"
  mv "$staging" "$SITE/pkg"
  rm -rf "$SITE/pkg.old"
}

case "$WHAT" in
  server) build_server ;;
  site) build_site ;;
  all) build_site; build_server ;;
esac
