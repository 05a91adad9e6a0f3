"""Schemathesis hooks for the contract run (scripts/contract.sh).

filter_case keeps the run from revoking the API key it runs with (CONTRACT_RUN_KEY_ID).

filter_failure drops two kinds of positive_data_acceptance failures (ST202: a schema-valid request
refused), and nothing else:
- a 422 that names nothing but the few rules the OpenAPI document states in words and no JSON
  Schema can encode, because the answer depends on what the server holds, on the clock, or on two
  values compared with each other (RULES below: each 422 detail, field and message, must match);
- the token operation's documented 424 for the seeded Salesforce connection: the run has no
  Salesforce to get a token from.
Any other refusal of a schema-valid request still fails the run, as does every other check.
"""

import os
import re

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

LISTS = {"listEnvironments", "listConnections", "listIntegrations", "listApiKeys", "listAudit", "listUsers", "listOutbox"}


def list_rule(field, message):
    # A cursor is valid only as issued, for its list and mode; since_id and updated_since
    # exclude each other (two parameters compared).
    return field == "cursor" or (field == "since_id" and "cannot be combined" in message)


RULES = {
    # `to` must be later than `from`.
    "listAudit": lambda f, m: list_rule(f, m) or (f == "to" and "later than from" in m),
    "exportAudit": lambda f, m: f == "to" and "later than from" in m,
    # expires_at must be in the future; a grant's environment must exist.
    "createApiKey": lambda f, m: (f == "expires_at" and "future" in m) or re.fullmatch(r"grants\[\d+\]\.environment", f) is not None,
    # Which settings and secrets a change may hold depends on the stored connection.
    "updateConnection": lambda f, m: f.startswith(("settings.", "secrets.")),
    # The connection must exist in the environment, with the integration's provider.
    "bindIntegration": lambda f, m: f == "connection",
    # Object names are compared case-insensitively, across both spellings.
    "publishIntegration": lambda f, m: re.fullmatch(r"objects\[\d+\]\.name", f) is not None and "listed twice" in m,
    # Without an address in the request, the connection's stored admin_email is used.
    "issueCertificate": lambda f, m: f == "admin_email" and "whom to ask" in m,
    "resendAdminRequest": lambda f, m: f == "admin_email" and "whom to ask" in m,
    "requestCredentials": lambda f, m: f == "admin_email" and "whom to ask" in m,
    # A certificate and key must parse, belong together and not have expired.
    "uploadCertificate": lambda f, m: f in ("certificate", "private_key"),
    # A bundle's digest covers its content; its items must fit the target environment.
    "importBundle": lambda f, m: f == "digest" or re.match(r"(integrations|connections|bindings)\[\d+\]", f) is not None,
}
for name in LISTS - RULES.keys():
    RULES[name] = list_rule


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if not isinstance(failure, RejectedPositiveData):
        return True
    operation = case.operation.definition.raw.get("operationId")
    if operation == "integrationToken" and response.status_code == 424:
        # The run has no Salesforce: the seeded Salesforce connection cannot give a token, and
        # says so with the documented 424 (a dependency's failure, not a refused request).
        return False
    if response.status_code != 422:
        return True
    rule = RULES.get(operation)
    if rule is None:
        return True
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return True
    return not (details and all(rule(d["field"], d["message"]) for d in details))


@schemathesis.hook
def filter_case(context, case):
    if case.operation.definition.raw.get("operationId") != "revokeApiKey":
        return True
    return str((case.path_parameters or {}).get("id")) != os.environ.get("CONTRACT_RUN_KEY_ID")
