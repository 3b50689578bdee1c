"""docs/sandbox.md tells a site how to trust the CDS Hooks sandbox offline with
its published key. The documented entry must start the service, name the key
the sandbox's real requests name, and a token shaped exactly like the
sandbox's (header alg, typ, kid and a jku it always sends) must pass through
the HTTP endpoint without the service fetching anything."""
from __future__ import annotations

import copy
import json
import re
import time
import uuid

import responses

from cds_services.runtime import EXTENSION
from tests.conftest import ROOT, SAMPLES, load_json
from tests.signing import bearer, generate_ec_key, sign_token

DOC = (ROOT / "docs" / "sandbox.md").read_text(encoding="utf-8")
CAPTURED = load_json(ROOT.parent / "shared" / "realclient" / "sandbox" / "order-sign-platelets-low.json")
SIGN = "/cds-services/ixabepilone-order-sign"


def documented_entry() -> str:
    match = re.search(r"<!-- example: sandbox-trusted-clients -->\s*```json\n(.*?)```", DOC, re.DOTALL)
    assert match, "docs/sandbox.md lost its sandbox-trusted-clients example"
    return match.group(1)


def test_documented_entry_starts_the_service_with_the_key_the_sandbox_names(make_app):
    app = make_app({"allow_unauthenticated": False}, environ={"CDS_TRUSTED_CLIENTS": documented_entry()})
    (client,) = app.extensions[EXTENSION].clients.issuers
    header = CAPTURED["jwt_header"]
    assert client.iss == "https://sandbox.cds-hooks.org"
    assert list(client.jwks) == [header["kid"]]
    assert client.jwks[header["kid"]]["alg"] == header["alg"] == "ES384"
    assert client.jku_allowlist == () and client.jwks_url is None  # nothing is ever fetched


@responses.activate  # no URL registered: any outbound request would fail and be recorded
def test_a_token_shaped_like_the_sandboxs_passes_offline(make_app):
    """The sandbox's private key is not ours to ship, so a key of our own stands in for it,
    configured under the sandbox's kid exactly as the documented entry does."""
    header = CAPTURED["jwt_header"]
    stand_in = generate_ec_key(kid=header["kid"], alg=header["alg"])
    entry = json.loads(documented_entry())
    entry[0]["jwks"]["keys"] = [stand_in.public_jwk()]
    app = make_app({"allow_unauthenticated": False, "trusted_clients": json.dumps(entry)})

    issued = int(time.time())
    claims = {"iss": "https://sandbox.cds-hooks.org", "aud": "http://localhost" + SIGN,
              "exp": issued + 300, "iat": issued, "jti": str(uuid.uuid4())}
    assert sorted(claims) == sorted(CAPTURED["jwt_payload_claims"])  # the sandbox's claims, no more
    token = sign_token(stand_in, claims, headers={"jku": header["jku"], "typ": header["typ"]})
    body = copy.deepcopy(load_json(SAMPLES / "order-sign-platelets-low.json"))
    response = app.test_client().post(SIGN, json=body, headers={"Authorization": bearer(token)})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert len(responses.calls) == 0  # the jku was not fetched
