#!/usr/bin/env bash
# Token-broker and proxy load benchmark, one server, one run:
# - cached token fetches per second and p50/p99 latency at 64 concurrent connections, beside a
#   trivial route (GET /health) of the same server. Aim: the broker at least 0.8× the trivial
#   route's throughput, its p99 under 10 ms on 2 cores.
# - a Salesforce REST query through the proxy (/proxy/v1/DEV/Bench/services/data/…) beside the
#   same query sent directly to the same loopback stand-in with the broker's token: throughput at
#   64 connections (aim: the proxy at least 0.7× direct) and p50 at one connection (aim: the
#   proxy adds under 1 ms).
#
#   scripts/bench-broker.sh            # SQLite in a temporary folder, 20 s per route
#   DURATION=10s scripts/bench-broker.sh
#   PROFILE=1 scripts/bench-broker.sh  # also two authenticated reads that do part of the broker's work
#
# What it does: builds the release server binary without the WebAssembly front end, installs wrk
# (Debian) when missing, starts `connvault dev-salesforce` (the Salesforce stand-in) and
# `connvault serve` on free loopback ports with a throwaway data folder, creates an API key,
# then through the REST API: a Salesforce connection in DEV, its certificate, a connected app on
# the stand-in (its `POST /apps` form), the consumer key, integration `Bench` bound to the
# connection, and one token fetch to fill the cache. Then `wrk --latency` on each route, and a
# summary table. Every process it started is stopped on exit.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-20s}"
SF_USER="bench@example.com"

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench-broker: %s\n' "$*" >&2; exit 1; }

# --- (a) the release binary, without the wasm front end --------------------------------------
say "building the release server binary (cargo build --release -p app --no-default-features --features ssr)"
cargo build --release -p app --no-default-features --features ssr
BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/connvault"
[ -x "$BIN" ] || die "no binary at $BIN"

# --- (b) wrk --------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  say "installing wrk from Debian"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y wrk || { $SUDO apt-get update && $SUDO apt-get install -y wrk; }
fi
command -v curl >/dev/null 2>&1 || die "curl is needed"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (free ports, JSON)"

# --- (c) the stand-in and the server ---------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/connvault-bench.XXXXXX")"
chmod 700 "$WORK"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

json_get() { # json_get FIELD < json
  python3 -c 'import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}

start_standin() { # start_standin LOG [dev-salesforce args…]: sets STANDIN_URL (no subshell, so PIDS keeps the pid)
  local log="$1" port url
  shift
  port="$(free_port)"
  "$BIN" dev-salesforce --addr "127.0.0.1:$port" "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    grep -q "$url/" "$log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "$url/" "$log" || die "the stand-in did not start: $(cat "$log")"
  STANDIN_URL="$url"
}
start_standin "$WORK/standin.log"
SF_URL="$STANDIN_URL"
# A second org whose REST API takes API_LATENCY_MS to answer, as a real one does.
API_LATENCY_MS="${API_LATENCY_MS:-20}"
start_standin "$WORK/standin-slow.log" --api-latency-ms "$API_LATENCY_MS"
SLOW_URL="$STANDIN_URL"

export CONNVAULT_DATA_DIR="$WORK/data"
export CONNVAULT_ALLOW_LOOPBACK=1
export LEPTOS_SITE_ROOT="$WORK/site"
CV_PORT="$(free_port)"
export LEPTOS_SITE_ADDR="127.0.0.1:$CV_PORT"
export CONNVAULT_PUBLIC_URL="http://$LEPTOS_SITE_ADDR"
CV_URL="http://$LEPTOS_SITE_ADDR"

# --- (d) the API key (operator command, same data folder, before the server starts) ----------
say "creating the API key"
KEY="$("$BIN" api-key create --name bench --grant '*:*:rw' 2>"$WORK/api-key.log")" || die "api-key create failed: $(cat "$WORK/api-key.log")"
[ -n "$KEY" ] || die "no key printed"

"$BIN" serve >"$WORK/serve.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 300); do
  curl -fsS "$CV_URL/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$CV_URL/health" >/dev/null || die "connvault serve did not answer /health: $(tail -n 20 "$WORK/serve.log")"

# --- (e) the Salesforce connection, app and integration through the REST API -----------------
api() { # api METHOD PATH [JSON] → body on stdout; fails on a status >= 400
  local method="$1" path="$2" body="${3:-}" out status
  out="$WORK/answer"
  if [ -n "$body" ]; then
    status="$(curl -sS -o "$out" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' --data "$body" "$CV_URL$path")"
  else
    status="$(curl -sS -o "$out" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $KEY" "$CV_URL$path")"
  fi
  if [ "$status" -ge 400 ]; then
    printf 'bench-broker: %s %s answered %s: %s\n' "$method" "$path" "$status" "$(cat "$out")" >&2
    return 1
  fi
  cat "$out"
}

set_up() { # set_up CONNECTION INTEGRATION STAND-IN-URL: the connected-app flow, bound
  local name="$1" integration="$2" url="$3" conn consumer_key
  say "setting up connection $name and integration $integration in DEV (stand-in at $url)"
  conn="/api/v1/environments/DEV/connections/$name"
  api POST /api/v1/environments/DEV/connections \
    "{\"name\":\"$name\",\"provider\":\"salesforce\",\"settings\":{\"login_url\":\"$url\",\"username\":\"$SF_USER\"}}" >/dev/null
  api POST "$conn/certificate" '{}' >/dev/null
  api GET "$conn/certificate" >"$WORK/cert.pem"
  grep -q 'BEGIN CERTIFICATE' "$WORK/cert.pem" || die "no certificate PEM: $(cat "$WORK/cert.pem")"
  curl -sS -o "$WORK/app.html" --data-urlencode "certificate@$WORK/cert.pem" --data-urlencode "username=$SF_USER" \
    --data-urlencode "permitted_users=admin_approved" "$url/apps"
  consumer_key="$(sed -n 's/.*<code id="consumer-key">\([^<]*\)<\/code>.*/\1/p' "$WORK/app.html" | head -n 1)"
  [ -n "$consumer_key" ] || die "the stand-in gave no consumer key: $(cat "$WORK/app.html")"
  api PATCH "$conn" "{\"settings\":{\"consumer_key\":\"$consumer_key\"}}" >/dev/null
  api PUT "/api/v1/environments/DEV/integrations/$integration" '{"provider":"salesforce","objects":["Account"]}' >/dev/null
  api PUT "/api/v1/environments/DEV/integrations/$integration/binding" "{\"connection\":\"$name\"}" >/dev/null
}
set_up SF_Bench Bench "$SF_URL"
set_up SF_Slow BenchSlow "$SLOW_URL"
TOKEN_PATH=/api/v1/environments/DEV/integrations/Bench/token
first="$(api POST "$TOKEN_PATH")" || die "the first token fetch failed"
second="$(api POST "$TOKEN_PATH")"
[ "$(json_get cached <<<"$first")" = "False" ] || die "the first fetch should mint: $first"
[ "$(json_get cached <<<"$second")" = "True" ] || die "the second fetch should come from the cache: $second"

# --- (f) wrk on both routes --------------------------------------------------------------------
cat >"$WORK/token.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA

run_wrk() { # run_wrk NAME URL [wrk args…]
  local name="$1" url="$2"
  shift 2
  local shown="$*"
  say "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ${shown//$KEY/\$KEY} $url"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" | tee "$WORK/$name.wrk"
}
run_wrk health "$CV_URL/health"
run_wrk token "$CV_URL$TOKEN_PATH" -s "$WORK/token.lua"
after="$(api POST "$TOKEN_PATH")"
[ "$(json_get cached <<<"$after")" = "True" ] || die "the token was not served from the cache after the run: $after"
ROWS=("GET /health (trivial route, 1 query)=$WORK/health.wrk" "POST …/integrations/Bench/token (cached: no query while its route is kept)=$WORK/token.wrk")

# The proxy beside a direct call: the same SOQL query on the same stand-in, directly with the
# broker's token, and through the proxy with the API key.
SF_TOKEN="$(json_get access_token <<<"$after")"
INSTANCE="$(json_get instance_url <<<"$after")"
QUERY='/services/data/v60.0/query?q=SELECT+Id,+Name+FROM+Account'
direct_status="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SF_TOKEN" "$INSTANCE$QUERY")"
proxy_status="$(curl -sS -o "$WORK/proxied" -w '%{http_code}' -H "Authorization: Bearer $KEY" "$CV_URL/proxy/v1/DEV/Bench$QUERY")"
[ "$direct_status" = 200 ] && [ "$proxy_status" = 200 ] || die "the query answered $direct_status directly and $proxy_status through the proxy: $(cat "$WORK/proxied")"
run_wrk direct "$INSTANCE$QUERY" -H "Authorization: Bearer $SF_TOKEN"
run_wrk proxy "$CV_URL/proxy/v1/DEV/Bench$QUERY" -H "Authorization: Bearer $KEY"
CONNECTIONS_SAVED="$CONNECTIONS"
THREADS_SAVED="$THREADS"
CONNECTIONS=1
THREADS=1
run_wrk direct1 "$INSTANCE$QUERY" -H "Authorization: Bearer $SF_TOKEN"
run_wrk proxy1 "$CV_URL/proxy/v1/DEV/Bench$QUERY" -H "Authorization: Bearer $KEY"
CONNECTIONS="$CONNECTIONS_SAVED"
THREADS="$THREADS_SAVED"
ROWS+=("GET …/services/data/v60.0/query, direct to the stand-in=$WORK/direct.wrk" "GET /proxy/v1/DEV/Bench/services/data/v60.0/query=$WORK/proxy.wrk")
ROWS+=("the same, direct, 1 connection=$WORK/direct1.wrk" "the same, through the proxy, 1 connection=$WORK/proxy1.wrk")

# The same against the org that takes API_LATENCY_MS per query.
slow="$(api POST /api/v1/environments/DEV/integrations/BenchSlow/token)"
SLOW_TOKEN="$(json_get access_token <<<"$slow")"
SLOW_INSTANCE="$(json_get instance_url <<<"$slow")"
run_wrk slowdirect "$SLOW_INSTANCE$QUERY" -H "Authorization: Bearer $SLOW_TOKEN"
run_wrk slowproxy "$CV_URL/proxy/v1/DEV/BenchSlow$QUERY" -H "Authorization: Bearer $KEY"
ROWS+=("the same, direct, the org answering in ${API_LATENCY_MS} ms=$WORK/slowdirect.wrk" "the same, through the proxy, the org answering in ${API_LATENCY_MS} ms=$WORK/slowproxy.wrk")
if [ "${PROFILE:-0}" = 1 ]; then
  # Where the broker's time goes: authenticated reads that do part of its database work.
  # API key (1 query) + environment (1) + integrations::get or connections::get (2 each).
  run_wrk integration "$CV_URL/api/v1/environments/DEV/integrations/Bench" -H "Authorization: Bearer $KEY"
  run_wrk connection "$CV_URL/api/v1/environments/DEV/connections/SF_Bench" -H "Authorization: Bearer $KEY"
  ROWS+=("GET …/integrations/Bench (4 queries)=$WORK/integration.wrk" "GET …/connections/SF_Bench (4 queries)=$WORK/connection.wrk")
fi

# --- (g) the summary ---------------------------------------------------------------------------
python3 - "$THREADS" "$CONNECTIONS" "$DURATION" "${ROWS[@]}" <<'PY'
import re, sys

def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]

def parse(path):
    out = {"errors": 0, "non2xx": 0}
    for line in open(path):
        f = line.split()
        if line.startswith("Requests/sec:"):
            out["rps"] = float(f[1])
        elif len(f) == 2 and f[0] in ("50%", "99%"):
            out[f[0]] = ms(f[1])
        elif "Non-2xx or 3xx responses:" in line:
            out["non2xx"] = int(f[-1])
        elif line.strip().startswith("Socket errors:"):
            out["errors"] = sum(int(n) for n in re.findall(r"\d+", line))
    return out

threads, conns, duration = sys.argv[1:4]
rows = [(name, parse(path)) for name, path in (a.rsplit("=", 1) for a in sys.argv[4:])]
health, token, direct, proxy, direct1, proxy1, slowdirect, slowproxy = (r for _, r in rows[:8])
print()
print(f"wrk -t{threads} -c{conns} -d{duration} --latency, SQLite, one server, one run")
print()
print("| route | requests/s | × /health | × direct | p50 ms | p99 ms | non-2xx | socket errors |")
print("|---|---|---|---|---|---|---|---|")
for i, (name, r) in enumerate(rows):
    base = {3: direct, 5: direct1, 7: slowdirect}.get(i)
    vs_direct = f"{r['rps'] / base['rps']:.2f}" if base else ""
    print(f"| {name} | {r['rps']:.0f} | {r['rps'] / health['rps']:.2f} | {vs_direct} | {r['50%']:.2f} | {r['99%']:.2f} | {r['non2xx']} | {r['errors']} |")
ratio = token["rps"] / health["rps"]
print()
print(f"broker / trivial route throughput: {ratio:.2f}× (aim ≥ 0.80×): {'met' if ratio >= 0.8 else 'NOT met'}")
print(f"broker p99: {token['99%']:.2f} ms (aim < 10 ms): {'met' if token['99%'] < 10 else 'NOT met'}")
for label, d, p in (("the stand-in answering at once", direct, proxy), ("the org answering in its API latency", slowdirect, slowproxy)):
    ratio = p["rps"] / d["rps"]
    print(f"proxy / direct throughput at {conns} connections, {label}: {ratio:.2f}× (aim ≥ 0.70×): {'met' if ratio >= 0.7 else 'NOT met'}")
overhead = proxy1["50%"] - direct1["50%"]
print(f"proxy p50 overhead at 1 connection: {overhead:.2f} ms (aim < 1 ms): {'met' if overhead < 1 else 'NOT met'}")
if any(r["non2xx"] for _, r in rows):
    print("WARNING: some answers were not 2xx; the figures are not valid")
    sys.exit(1)
PY
