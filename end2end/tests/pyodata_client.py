"""An app using pyodata (SAP's OData client, from PyPI) against connvault's proxy.

    python pyodata_client.py SERVICE_URL API_KEY EXPIRE_URL

SERVICE_URL is the proxy's address of the integration (it stands where the SAP service root
would); the app holds only API_KEY. It reads the business partners, has the SAP stand-in end
every token and session (POST EXPIRE_URL), then creates a partner and reads them again: the
proxy renews the token and adds the CSRF token the write needs. Prints one JSON line.
"""

import json
import sys
import urllib.request

import pyodata
import requests

service_url, api_key, expire_url = sys.argv[1:4]
session = requests.Session()
session.headers["Authorization"] = f"Bearer {api_key}"

client = pyodata.Client(service_url, session)
partners = client.entity_sets.A_BusinessPartner
before = len(partners.get_entities().execute())

urllib.request.urlopen(urllib.request.Request(expire_url, method="POST"), timeout=10).read()

created = partners.create_entity().set(BusinessPartnerCategory="2", BusinessPartnerFullName="Proxy Client GmbH").execute()
after = len(partners.get_entities().execute())
print(json.dumps({"before": before, "created": created.BusinessPartnerFullName, "after": after}))
