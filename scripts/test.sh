#!/usr/bin/env bash
# connvault's whole test suite.
#
#   scripts/test.sh [all|rust|e2e]     (default: all; `make test` runs all)
#
# rust: `cargo test -p server -p app --features app/ssr` (one build: the server's unit tests,
#       its one integration-test binary, the app's unit and CLI tests), with a
#       throwaway PostgreSQL server started for them, its URL exported as
#       CONNVAULT_TEST_POSTGRES_URL, so the storage tests run on SQLite and
#       on PostgreSQL. A URL already set in the environment is used as is.
#       Then the API contract test (scripts/contract.sh: schemathesis against
#       the connvault binary those tests built).
# e2e:  the front end (scripts/build.sh site, in `all` mode built while the contract test
#       runs; in `e2e` mode the server binary too), then Playwright (end2end/) with the system Chromium against the
#       connvault binary the Rust tests built; Playwright starts the server
#       itself (playwright.config.ts).
#
# Missing PostgreSQL, Chromium or schemathesis: the part that needs it is SKIPPED with a
# loud banner; with CI=true that is a failure instead (exit 1).
# Expects the tools from scripts/tools.sh (`make tools`).
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

MODE="${1:-all}"
case "$MODE" in
  all|rust|e2e) ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "usage: scripts/test.sh [all|rust|e2e]" >&2; exit 2 ;;
esac
want() { [ "$MODE" = all ] || [ "$MODE" = "$1" ]; }

WORK="$(mktemp -d /tmp/connvault-test.XXXXXX)"
PG_DIR=""
PG_BIN=""
PG_STARTED=0

# Runs a command as the `postgres` user when root (initdb refuses root).
as_pg() {
  if is_root; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

cleanup() {
  local rc=$?
  if [ -n "${FRONTEND_PID:-}" ]; then kill "$FRONTEND_PID" 2>/dev/null || true; fi
  if [ "$PG_STARTED" = 1 ]; then
    (cd "$PG_DIR" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop) >/dev/null 2>&1 || true
  fi
  [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Missing prerequisite: a loud skip, or a failure under CI.
skip_or_fail() {
  local what="$1" reason="$2"
  if is_ci; then
    banner "SKIPPED: $what ($reason)" "CI=true: a skipped part of the suite is a FAILURE: exit 1"
    exit 1
  fi
  banner "SKIPPED: $what ($reason)"
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    echo $((20000 + RANDOM % 30000))
  fi
}

# Starts a throwaway PostgreSQL server and exports CONNVAULT_TEST_POSTGRES_URL;
# on failure sets PG_FAIL_REASON and returns 1. (Not to be run in a subshell.)
PG_FAIL_REASON=""
start_postgres() {
  PG_BIN="$(pg_bindir)"
  if [ -z "$PG_BIN" ]; then
    PG_FAIL_REASON="no PostgreSQL server binaries (initdb, pg_ctl) found"
    return 1
  fi
  if is_root && ! id postgres >/dev/null 2>&1; then
    PG_FAIL_REASON="running as root and there is no 'postgres' user to run initdb as"
    return 1
  fi
  PG_DIR="$(mktemp -d /tmp/connvault-pg.XXXXXX)"
  if is_root; then
    chown postgres: "$PG_DIR"
  fi
  local port
  port="$(free_port)"
  if ! (cd "$PG_DIR" && as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres \
        -E UTF8 --locale=C --no-sync) >"$WORK/initdb.log" 2>&1; then
    tail -n 20 "$WORK/initdb.log" >&2
    PG_FAIL_REASON="initdb failed"
    return 1
  fi
  if ! (cd "$PG_DIR" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" \
        -o "-k $PG_DIR -h 127.0.0.1 -p $port -F" -l "$PG_DIR/log" -w -t 60 start) \
        >"$WORK/pg_ctl.log" 2>&1; then
    tail -n 20 "$WORK/pg_ctl.log" "$PG_DIR/log" >&2 2>/dev/null || true
    PG_FAIL_REASON="pg_ctl start failed"
    return 1
  fi
  PG_STARTED=1
  export CONNVAULT_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  return 0
}

# --- bookkeeping -------------------------------------------------------------
passed=0
failed=0
skipped=0
results=()

run_step() {
  local name="$1"
  shift
  printf '\n==> %s\n' "$name"
  local rc=0 log
  log="$(mktemp "$WORK/step.XXXXXX")"
  # Output goes to the terminal as it comes and to a log, so the summary can say why a step
  # failed (a CI log often shows only its tail).
  { "$@" 2>&1 || echo "$?" >"$log.rc"; } | tee "$log" || true
  [ -f "$log.rc" ] && rc="$(cat "$log.rc")"
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    results+=("ok      $name")
  else
    failed=$((failed + 1))
    results+=("FAILED  $name (exit $rc)")
    local line
    while IFS= read -r line; do
      results+=("          $line")
    done < <(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -v -E '\.\.\. (ok|ignored)$' | grep -E -m 6 '(^|[^[:alnum:]_])(error|Error|ERROR|panicked|No space left)' | cut -c1-240)
    results+=("          (free disk: $(df -h . | awk 'NR == 2 { print $4 }'))")
  fi
  return "$rc"
}

skip_step() {
  skipped=$((skipped + 1))
  results+=("skipped $1 ($2)")
}

# --- prerequisites (checked first, so CI fails fast) -------------------------
if want e2e; then
  if [ ! -x "$CHROMIUM_BIN" ]; then
    skip_or_fail "end-to-end browser tests" "$CHROMIUM_BIN not found; apt-get install chromium"
    E2E_SKIP="no chromium"
  elif [ ! -d end2end/node_modules ]; then
    skip_or_fail "end-to-end browser tests" "end2end/node_modules missing; run make tools"
    E2E_SKIP="no end2end/node_modules"
  else
    E2E_SKIP=""
  fi
fi

CONTRACT_SKIP=""
if want rust && [ ! -x "$CONNVAULT_VENV/bin/schemathesis" ]; then
  skip_or_fail "API contract test" "no schemathesis in $CONNVAULT_VENV; run make tools"
  CONTRACT_SKIP="no schemathesis"
fi

if want rust; then
  if [ -n "${CONNVAULT_TEST_POSTGRES_URL:-}" ]; then
    echo "PostgreSQL: using CONNVAULT_TEST_POSTGRES_URL from the environment"
  elif start_postgres; then
    echo "PostgreSQL: throwaway server at ${CONNVAULT_TEST_POSTGRES_URL}"
  else
    unset CONNVAULT_TEST_POSTGRES_URL
    skip_or_fail "PostgreSQL backend tests" "$PG_FAIL_REASON"
  fi
fi

# A one-shot build gains nothing from incremental state, which is the larger part of
# target/ (12 GB of a cold clone's 30 before debug info was trimmed).
if is_ci; then
  export CARGO_INCREMENTAL=0
fi

# --- Rust tests --------------------------------------------------------------
if want rust; then
  # One invocation, so both packages share one feature resolution and nothing builds twice.
  # --no-fail-fast: every test binary runs and reports, not only those before the first failure.
  run_step "cargo test -p server -p app --features app/ssr" cargo test --no-fail-fast -p server -p app --features app/ssr || true
  if [ -z "${CONNVAULT_TEST_POSTGRES_URL:-}" ]; then
    skip_step "PostgreSQL backend tests" "no PostgreSQL"
  fi
  # The front end builds while the contract test runs: the contract keeps about one core busy
  # (schemathesis and the server), the build the other (a minute and a half off `make test`).
  if [ "$MODE" = all ] && [ -z "$E2E_SKIP" ]; then
    FRONTEND_LOG="$WORK/frontend.log"
    (scripts/build.sh site >"$FRONTEND_LOG" 2>&1; echo "$?" >"$FRONTEND_LOG.rc") &
    FRONTEND_PID=$!
  fi
  # The binary `cargo test -p app --features ssr` built, against the OpenAPI document.
  if [ -n "$CONTRACT_SKIP" ]; then
    skip_step "API contract test" "$CONTRACT_SKIP"
  else
    run_step "API contract (scripts/contract.sh)" scripts/contract.sh || true
  fi
fi

# --- end-to-end --------------------------------------------------------------
# The front end: the build started beside the contract test (its output now), or a build here.
frontend() {
  if [ -n "${FRONTEND_PID:-}" ]; then
    # run_step runs this in a pipeline's subshell, where the build is not a child to `wait`
    # for: wait for its exit code file instead (written when it ends, however it ends).
    while [ ! -f "$FRONTEND_LOG.rc" ] && kill -0 "$FRONTEND_PID" 2>/dev/null; do sleep 1; done
    cat "$FRONTEND_LOG"
    return "$(cat "$FRONTEND_LOG.rc" 2>/dev/null || echo 1)"
  fi
  scripts/build.sh "$([ "$MODE" = all ] && echo site || echo all)"
}

if want e2e; then
  if [ -n "$E2E_SKIP" ]; then
    skip_step "end-to-end browser tests" "$E2E_SKIP"
  elif run_step "front end (scripts/build.sh $([ "$MODE" = all ] && echo site || echo all))" frontend; then
    # A fresh, empty data directory for the server Playwright starts.
    export CONNVAULT_E2E_DATA_DIR="$WORK/e2e-data"
    mkdir -p "$CONNVAULT_E2E_DATA_DIR"
    run_step "playwright test" bash -c 'cd end2end && exec npx --no-install playwright test' || E2E_FAILED=1
  else
    skip_step "playwright test" "build failed"
  fi
fi

# --- summary -----------------------------------------------------------------
printf '\n==> summary\n'
for r in "${results[@]}"; do printf '  %s\n' "$r"; done
if [ -n "${E2E_FAILED:-}" ]; then
  printf '\n==> failed browser tests (traces and screenshots in end2end/test-results)\n'
  node end2end/failures.js || true
fi
if [ "$skipped" -gt 0 ]; then
  banner "SKIPPED parts of the suite: see the summary above"
fi
printf 'test.sh: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
[ "$failed" -eq 0 ]
