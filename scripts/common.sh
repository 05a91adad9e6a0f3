# Shared helpers for scripts/tools.sh and scripts/test.sh. Source it, don't run it.
# shellcheck shell=bash

# cargo, rustup and everything `cargo install` puts there.
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# The Python virtualenv holding schemathesis for the API contract test (scripts/contract.sh)
# and aiosmtpd for the mail tests;
# scripts/tools.sh installs it.
export CONNVAULT_VENV="${CONNVAULT_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/connvault/venv}"
SCHEMATHESIS_VERSION=4.32.5
# The real SMTP server the mail tests send to (server/tests/integration/common/aiosmtpd.rs).
AIOSMTPD_VERSION=1.4.6
# pyodata: SAP's OData client, pointed at the proxy in end2end/tests/clients.spec.ts.
PYODATA_VERSION=1.12.1

# The Chromium the Playwright config launches (end2end/playwright.config.ts).
export CHROMIUM_BIN=/usr/bin/chromium

is_root() { [ "$(id -u)" -eq 0 ]; }

is_ci() { [ "${CI:-}" = "true" ]; }

# Prints the directory holding initdb and pg_ctl, or nothing.
pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir="$(pg_config --bindir 2>/dev/null || true)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  fi
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
    printf '%s\n' "$dir"
    return 0
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dir="$(dirname "$(readlink -f "$(command -v initdb)")")"
    if [ -x "$dir/pg_ctl" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  fi
  return 0
}

# The wasm-bindgen version pinned in Cargo.lock (first [[package]] named
# wasm-bindgen), or nothing.
lock_wasm_bindgen_version() {
  awk '
    /^\[\[package\]\]/ { name = ""; next }
    /^name = /         { name = $3; gsub(/"/, "", name); next }
    /^version = / && name == "wasm-bindgen" { v = $3; gsub(/"/, "", v); print v; exit }
  ' "$REPO_ROOT/Cargo.lock"
}

banner() {
  local line='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  printf '\n%s\n%s\n' "$line" "$line"
  local msg
  for msg in "$@"; do printf '!!!! %s\n' "$msg"; done
  printf '%s\n%s\n\n' "$line" "$line"
}
