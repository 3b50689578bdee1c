"""The benchmark's floors decode the body they are given, with the decoder they are named for."""
from __future__ import annotations

import json

import pytest

from bench.baseline_app import create_app
from bench.patients import generate_record, hook_request

SIGN = "/cds-services/ixabepilone-order-sign"


@pytest.mark.parametrize("decoder", ["flask", "simdjson"])
def test_floor_decodes_the_hook_body(decoder):
    client = create_app(decoder).test_client()
    body = json.dumps(hook_request(generate_record(20))).encode()
    answer = client.post(SIGN, data=body, content_type="application/json")
    assert answer.status_code == 200
    assert answer.get_json() == {"cards": [], "seen": True}


def test_floor_with_simdjson_reads_the_whole_body():
    # simdjson validates the whole document: a body cut short is not a JSON object.
    app = create_app("simdjson")
    app.testing = True  # let the decoder's error through instead of a 500
    client = app.test_client()
    with pytest.raises(ValueError, match="TAPE_ERROR"):
        client.post(SIGN, data=b'{"hook": "order-sign", "prefetch": {', content_type="application/json")


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="BENCH_BASELINE_DECODER"):
        create_app("ujson")
