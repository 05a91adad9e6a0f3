"""Seeds a throwaway connvault for the contract run (scripts/contract.sh), through the API.

    python seed.py BASE_URL API_KEY

Creates in DEV what the run's operations address by name (the names are in contract.sh's
schemathesis configuration): http connections whose base URL is this server's own /health (so
a connection test really runs and passes), a Salesforce connection with a certificate and an
open admin request, integrations bound to them, and two spare API keys for the revoke
operation. Prints the run's own key id, then the spare keys' ids, one a line. Exits non-zero if
any step fails.
"""

import sys

import requests

base, key = sys.argv[1].rstrip("/"), sys.argv[2]
api = requests.Session()
api.headers["Authorization"] = f"Bearer {key}"


def call(method, path, body=None, expect=(200, 201)):
    r = api.request(method, f"{base}/api/v1{path}", json=body, timeout=60)
    if r.status_code not in expect:
        sys.exit(f"seed: {method} {path}: {r.status_code} {r.text}")
    return r.json() if r.content else None


for i in (1, 2, 3):
    call("POST", "/environments/DEV/connections", {
        "name": f"Seeded{i}",
        "provider": "http",
        "settings": {"base_url": f"{base}/health", "auth": "bearer"},
        "secrets": {"token": "contract-run-token"},
    })
call("POST", "/environments/DEV/connections", {
    "name": "SeededSF",
    "provider": "salesforce",
    "settings": {"login_url": base, "username": "integration@example.com", "admin_email": "admin@example.com"},
})
call("POST", "/environments/DEV/connections/SeededSF/certificate", {"send_request": True})
# A connection that signs in (its sign-in status and disconnect routes).
call("POST", "/environments/DEV/connections", {
    "name": "SeededOAuth",
    "provider": "oauth2",
    "settings": {"authorize_url": f"{base}/authorize", "token_url": f"{base}/token", "client_id": "contract-client", "scopes": "read offline_access"},
    "secrets": {"client_secret": "contract-run-secret"},
})
for name, provider, connection in [("SeededApp1", "http", "Seeded1"), ("SeededApp2", "http", "Seeded2"), ("SeededSFApp", "salesforce", "SeededSF")]:
    call("PUT", f"/environments/DEV/integrations/{name}", {"provider": provider, "objects": ["Account", {"name": "Contact", "access": "read_write"}]})
    call("PUT", f"/environments/DEV/integrations/{name}/binding", {"connection": connection})
own = [k["id"] for k in call("GET", "/api-keys?limit=1000")["items"] if key.startswith(k["prefix"] + "_")]
if len(own) != 1:
    sys.exit("seed: the run's own key is not listed")
print(own[0])
for i in (1, 2):
    spare = call("POST", "/api-keys", {"name": f"spare {i}", "grants": [{"environment": "QA", "resource": "tokens", "access": "read"}]})
    print(spare["id"])
