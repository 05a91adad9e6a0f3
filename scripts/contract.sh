#!/usr/bin/env bash
# The API contract test: schemathesis against a throwaway connvault server.
#
#   scripts/contract.sh [EXTRA SCHEMATHESIS OPTIONS...]
#
# Builds nothing: uses ${CARGO_TARGET_DIR:-target}/debug/connvault (`cargo build -p app
# --features ssr --bin connvault`, or any `cargo test -p app --features ssr`) and the
# schemathesis that scripts/tools.sh installs into $CONNVAULT_VENV (default
# ~/.cache/connvault/venv). Starts the server on a free loopback port with a temporary data
# directory, creates an API key with every grant, seeds data through the API
# (scripts/contract/seed.py), then runs schemathesis on the served /api/v1/openapi.json with
# random data (the seed is printed: pass --seed N to replay a run). Exits non-zero on any
# failure; the server is stopped and the data directory removed either way.
# CONTRACT_SCHEMA=FILE tests that document (e.g. a saved copy of the served one, edited to try a
# change) instead of the one the binary generates, to work on it without rebuilding.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"

BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/connvault"
ST="$CONNVAULT_VENV/bin/schemathesis"
PY="$CONNVAULT_VENV/bin/python"
# Examples per operation and phase: about 70 s in all on 2 cores.
MAX_EXAMPLES=100
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
CHECKS+=,positive_data_acceptance,negative_data_rejection,ignored_auth,missing_required_header,unsupported_method
CHECKS+=,use_after_free,allow_header_conformance
# Not ensure_resource_availability: a PATCH may rename a connection (`name` is writable), and
# that check takes a later 404 under the old name, in a sibling step, for a lost resource.

[ -x "$BIN" ] || { echo "contract.sh: $BIN not found; build it: cargo build -p app --features ssr --bin connvault" >&2; exit 1; }
[ -x "$ST" ] || { echo "contract.sh: $ST not found; run scripts/tools.sh" >&2; exit 1; }

WORK="$(mktemp -d /tmp/connvault-contract.XXXXXX)"
SERVER_PID=""
stop() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -s "$WORK/server.log" ]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/server.log" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"
export CONNVAULT_DATA_DIR="$WORK/data" LEPTOS_SITE_ADDR="127.0.0.1:$PORT" CONNVAULT_PUBLIC_URL="$BASE" RUST_LOG=warn
# The API needs no built front end; these only keep Leptos from complaining (see the Makefile).
export LEPTOS_OUTPUT_NAME=connvault LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg
# The seeded http connections call this server's own /health, on loopback.
export CONNVAULT_ALLOW_LOOPBACK=1
# ignored_auth sends bad keys on purpose: far more than the default 10 per 5 minutes per
# address, after which every request from 127.0.0.1 would get 429 for the rest of the run.
export CONNVAULT_AUTH_FAILURE_LIMIT=1000000
unset DATABASE_URL CONNVAULT_CONFIG CONNVAULT_MASTER_KEY CONNVAULT_MASTER_KEY_PREVIOUS CONNVAULT_SMTP_URL
mkdir -p "$CONNVAULT_DATA_DIR"

KEY="$("$BIN" api-key create --name contract --grant '*:*:rw' 2>"$WORK/key.log" | grep -Eo 'cvk_[0-9a-f]{8}_[A-Za-z0-9_-]+' | tail -n 1)" || true
[ -n "$KEY" ] || { cat "$WORK/key.log" >&2; echo "contract.sh: could not create the API key" >&2; exit 1; }

"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  if "$PY" -c "import sys, requests; sys.exit(requests.get('$BASE/health', timeout=1).status_code != 200)" 2>/dev/null; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "contract.sh: the server stopped" >&2; exit 1; }
  sleep 0.2
done

mapfile -t SEEDED < <("$PY" scripts/contract/seed.py "$BASE" "$KEY")
[ "${#SEEDED[@]}" -eq 3 ] || { echo "contract.sh: seeding failed" >&2; exit 1; }
# The hooks keep the run from revoking its own key (random ids are small numbers, like its own).
export CONTRACT_RUN_KEY_ID="${SEEDED[0]}"
SPARE_KEYS=("${SEEDED[1]}" "${SEEDED[2]}")

# Real names for the operations that address a connection, integration or key, most of the
# time (random ones still come through, for the 404s).
cat >"$WORK/schemathesis.toml" <<EOF
color = false

[cache]
# Each run starts from nothing, like its server (and leaves nothing in the work tree).
enabled = false

[generation]
# Send only the run's own key, not generated cookies or keys (those would hit the CSRF guard
# or the auth limiter instead of the operation).
with-security-parameters = false

[dictionaries.environments]
values = ["DEV", "QA", "PROD"]
[dictionaries.connections]
values = ["Seeded1", "Seeded2", "Seeded3"]
[dictionaries.salesforce_connections]
values = ["SeededSF"]
[dictionaries.sign_in_connections]
values = ["SeededOAuth"]
[dictionaries.integrations]
values = ["SeededApp1", "SeededApp2", "SeededSFApp"]
[dictionaries.spare_keys]
values = [${SPARE_KEYS[0]}, ${SPARE_KEYS[1]}]

[parameters]
"path.env" = { dictionary = "environments", probability = 0.9 }

[[operations]]
include-path-regex = '/connections/\{name\}(/test)?$'
parameters = { "path.name" = { dictionary = "connections", probability = 0.9 } }

[[operations]]
include-path-regex = '/connections/\{name\}/(certificate|status|admin-request|admin-response)$'
parameters = { "path.name" = { dictionary = "salesforce_connections", probability = 0.9 } }

[[operations]]
include-path-regex = '/connections/\{name\}/(sign-in|disconnect)$'
parameters = { "path.name" = { dictionary = "sign_in_connections", probability = 0.9 } }

[[operations]]
include-path-regex = '/integrations/\{name\}'
parameters = { "path.name" = { dictionary = "integrations", probability = 0.9 } }

[[operations]]
include-operation-id = "revokeApiKey"
parameters = { "path.id" = { dictionary = "spare_keys", probability = 1.0 } }
EOF

echo "contract: connvault at $BASE, schemathesis $("$ST" --version | awk '{print $NF}'), $MAX_EXAMPLES examples per operation and phase"
rc=0
SCHEMATHESIS_HOOKS="$REPO_ROOT/scripts/contract/hooks.py" "$ST" --config-file "$WORK/schemathesis.toml" run "${CONTRACT_SCHEMA:-$BASE/api/v1/openapi.json}" \
  --url "$BASE" \
  -H "Authorization: Bearer $KEY" \
  --checks "$CHECKS" \
  --max-examples "$MAX_EXAMPLES" \
  "$@" || rc=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "contract.sh: the server died during the run" >&2
  rc=1
fi
exit "$rc"
