#!/usr/bin/env bash
# Installs what building, running and testing connvault needs, skipping what is there.
#
#   scripts/tools.sh run        what `make run` needs: the wasm32-unknown-unknown target and the
#                               exact wasm-bindgen-cli that Cargo.lock names (nothing else)
#   scripts/tools.sh [test]     (the default) the same plus what the tests need: the end2end npm
#                               packages, Debian's chromium and postgresql, and schemathesis and
#                               aiosmtpd (PyPI) in $CONNVAULT_VENV
#   scripts/tools.sh watch      the same as run, plus cargo-leptos 0.3.10 (no_downloads) for
#                               `make watch` (live reload); nothing else needs it
#   --release (with any mode)   also binaryen (wasm-opt), for `scripts/build.sh --release`
#
# System packages are installed with apt-get only when running as root;
# otherwise what is missing is reported and the rest goes on (scripts/test.sh
# then skips what it cannot run, or fails under CI=true).
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

CARGO_LEPTOS_VERSION=0.3.10
WANT_RELEASE=0
MODE=test
for arg in "$@"; do
  case "$arg" in
    --release) WANT_RELEASE=1 ;;
    run|test|watch) MODE="$arg" ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "tools.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done
for_tests() { [ "$MODE" = test ]; }

say() { printf '[tools] %s\n' "$*"; }

# --- system packages ---------------------------------------------------------
missing_pkgs=()
if for_tests; then
  [ -x "$CHROMIUM_BIN" ] || missing_pkgs+=(chromium)
  [ -n "$(pg_bindir)" ] || missing_pkgs+=(postgresql)
  # python3 with venv, for schemathesis (the API contract test) and aiosmtpd (the mail tests).
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing_pkgs+=(python3 python3-venv)
fi
if [ "$WANT_RELEASE" = 1 ] && ! command -v wasm-opt >/dev/null 2>&1; then
  missing_pkgs+=(binaryen)
fi

if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  if is_root && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${missing_pkgs[*]}"
    if apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing_pkgs[@]}"; then
      say "system packages installed"
    else
      banner "apt-get could not install: ${missing_pkgs[*]}" \
        "tests that need them will be skipped (and fail under CI=true)"
    fi
  else
    banner "missing system packages: ${missing_pkgs[*]}" \
      "install them as root: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing_pkgs[*]}" \
      "tests that need them will be skipped (and fail under CI=true)"
  fi
fi

# --- Rust --------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
  echo "[tools] cargo/rustup not found (looked in PATH and ~/.cargo/bin); install Rust via rustup first" >&2
  exit 1
fi

if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "wasm32-unknown-unknown target: present"
else
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$MODE" != watch ]; then
  : # cargo-leptos only for `make watch`: scripts/build.sh builds with cargo and wasm-bindgen
elif cargo leptos --version 2>/dev/null | grep -Eq "(^|[^0-9.])${CARGO_LEPTOS_VERSION//./\\.}([^0-9.]|$)"; then
  say "cargo-leptos $CARGO_LEPTOS_VERSION: present"
else
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (no_downloads: tools come from PATH)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
if [ ! -f Cargo.lock ]; then
  say "Cargo.lock missing: generating it"
  cargo generate-lockfile
fi
wb_version="$(lock_wasm_bindgen_version)"
if [ -z "$wb_version" ]; then
  echo "[tools] no wasm-bindgen package in Cargo.lock" >&2
  exit 1
fi
have_wb="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have_wb" = "$wb_version" ]; then
  say "wasm-bindgen-cli $wb_version: present"
else
  say "installing wasm-bindgen-cli $wb_version (have: ${have_wb:-none})"
  cargo install wasm-bindgen-cli --version "$wb_version"
fi

if ! for_tests; then
  say "done ($MODE: the test tools are installed by scripts/tools.sh test)"
  exit 0
fi

# --- end2end npm packages ----------------------------------------------------
# @playwright/test 1.x needs Node >= 20 (Debian 12's own nodejs is 18: too old).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "[tools] node/npm not found: Node.js >= 20 with npm is needed for end2end/" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "[tools] Node.js $(node --version) is too old for end2end/ (@playwright/test needs >= 20)" >&2
  exit 1
fi
# Present means every package of package.json is there (jsforce came later than the rest).
if [ -d end2end/node_modules/@playwright/test ] && [ -d end2end/node_modules/jsforce ]; then
  say "end2end/node_modules: present"
else
  say "npm ci in end2end/"
  (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# --- Python test tools from PyPI, in their own virtualenv --------------------
# schemathesis: the API contract test; aiosmtpd: the real SMTP server the mail tests send to.
have_st="$("$CONNVAULT_VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}' || true)"
have_smtpd="$("$CONNVAULT_VENV/bin/python" -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null || true)"
have_pyodata="$("$CONNVAULT_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pyodata"))' 2>/dev/null || true)"
if [ "$have_st" = "$SCHEMATHESIS_VERSION" ] && [ "$have_smtpd" = "$AIOSMTPD_VERSION" ] && [ "$have_pyodata" = "$PYODATA_VERSION" ]; then
  say "schemathesis $SCHEMATHESIS_VERSION, aiosmtpd $AIOSMTPD_VERSION, pyodata $PYODATA_VERSION: present ($CONNVAULT_VENV)"
elif python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  say "installing schemathesis $SCHEMATHESIS_VERSION and aiosmtpd $AIOSMTPD_VERSION into $CONNVAULT_VENV (have: ${have_st:-none}, ${have_smtpd:-none})"
  python3 -m venv "$CONNVAULT_VENV"
  "$CONNVAULT_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "aiosmtpd==$AIOSMTPD_VERSION" "pyodata==$PYODATA_VERSION"
else
  banner "python3 with venv is missing: schemathesis and aiosmtpd not installed" \
    "the API contract and mail tests will be skipped (and fail under CI=true)"
fi

say "done"
