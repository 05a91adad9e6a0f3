#!/usr/bin/env bash
# Measures the README's two commands as a new user meets them: in a fresh clone of this
# repository's HEAD (nothing built), and with --fresh-cargo-home also with an empty CARGO_HOME,
# so every crate is downloaded again and wasm-bindgen-cli is built again.
#
#   scripts/measure-first-run.sh run  [--fresh-cargo-home]   time from `make run` to the first page
#   scripts/measure-first-run.sh test [--fresh-cargo-home]   time of `make test` (CI=true)
#
# `run`: starts `make run` on a free loopback port with a throwaway data folder and polls until
# the sign-in page and the front end's .wasm both answer 200, then stops it. `test`: runs
# `make test` to the end. Both print the total, the time at which each phase ended (from the
# timestamped log), and the size of the clone's target/. The clone is removed afterwards; its
# log is kept (the path is printed). What this cannot make fresh: the Rust toolchain and its
# wasm32 target (rustup's, shared by the machine), and the system packages (apt), which `make
# test` installs when missing and which were already installed where the README's figures were
# measured.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WHAT="${1:-}"
case "$WHAT" in run|test) ;; *) sed -n '2,17p' "$0"; exit 2 ;; esac
FRESH_HOME=0
[ "${2:-}" = "--fresh-cargo-home" ] && FRESH_HOME=1

WORK="$(mktemp -d /tmp/connvault-first-run.XXXXXX)"
LOG="/tmp/connvault-first-run-$WHAT-$(date +%Y%m%d-%H%M%S).log"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -- "-$PID" 2>/dev/null || kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

git clone -q "$REPO_ROOT" "$WORK/connvault"
cd "$WORK/connvault"
echo "clone of $(git rev-parse --short HEAD) in $WORK/connvault; log: $LOG"
if [ "$FRESH_HOME" = 1 ]; then
  # Only rustup's proxies (cargo, rustc, rustup, rustfmt) come from the machine's own
  # CARGO_HOME/bin; everything else there (wasm-bindgen, cargo-leptos) is left off PATH, so
  # `make` installs it into the empty CARGO_HOME as on a new machine.
  machine_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
  mkdir -p "$WORK/toolchain-bin"
  for tool in cargo rustc rustup rustfmt; do
    [ -x "$machine_bin/$tool" ] && ln -s "$machine_bin/$tool" "$WORK/toolchain-bin/$tool"
  done
  PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -x -F "$machine_bin" | paste -sd: -)"
  export CARGO_HOME="$WORK/cargo-home"
  mkdir -p "$CARGO_HOME/bin"
  export PATH="$CARGO_HOME/bin:$WORK/toolchain-bin:$PATH"
  echo "CARGO_HOME=$CARGO_HOME (empty)"
  if command -v wasm-bindgen >/dev/null; then echo "warning: wasm-bindgen is still on PATH: $(command -v wasm-bindgen)" >&2; fi
fi

START=$(date +%s)
stamp() { while IFS= read -r line; do printf '%5ds %s\n' "$(( $(date +%s) - START ))" "$line"; done; }

phases() {
  grep -E '\[tools\] done|Finished `|==> |passed|test.sh:' "$LOG" | sed 's/^/  /' | cut -c1-160 || true
  echo "  target/: $(du -sh target 2>/dev/null | cut -f1)"
}

if [ "$WHAT" = run ]; then
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  export LEPTOS_SITE_ADDR="127.0.0.1:$PORT" CONNVAULT_DATA_DIR="$WORK/data"
  set -m
  (make run 2>&1 | stamp >"$LOG") &
  PID=$!
  set +m
  while kill -0 "$PID" 2>/dev/null; do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/sign-in" 2>/dev/null \
      && curl -fsS -o /dev/null "http://127.0.0.1:$PORT/pkg/connvault_bg.wasm" 2>/dev/null; then
      T=$(( $(date +%s) - START ))
      echo "make run: first page after ${T}s ($((T / 60)) min $((T % 60)) s)"
      phases
      exit 0
    fi
    sleep 1
  done
  echo "make run stopped before serving; the end of its log:" >&2
  tail -n 30 "$LOG" >&2
  exit 1
fi

rc=0
CI=true make test 2>&1 | stamp >"$LOG" || rc=$?
T=$(( $(date +%s) - START ))
echo "make test: exit $rc after ${T}s ($((T / 60)) min $((T % 60)) s)"
phases
exit "$rc"
