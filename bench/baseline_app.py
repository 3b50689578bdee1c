"""The stack's floor: a trivial Flask app served exactly like the real one.

``gunicorn -c gunicorn.conf.py bench.baseline_app:app`` with the same
workers, threads and access log. Its hook endpoint reads and decodes the
same JSON body and answers an empty card list, so the service's throughput
reads as a share of what gunicorn + Flask + JSON can do on this machine.

It decodes with Flask's own decoder (the standard library), as the issue
"Speed near the floor" defines the floor. The service decodes with simdjson,
so a second floor, ``BENCH_BASELINE_DECODER=simdjson``, parses the body as
the service does and touches nothing: bench/run.py reports the ratios
against both, so what the faster decoder alone buys is visible.
"""
from __future__ import annotations

import os

import simdjson
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue


def create_app(decoder: str | None = None) -> Flask:
    decoder = decoder or os.environ.get("BENCH_BASELINE_DECODER", "flask")
    if decoder not in ("flask", "simdjson"):
        raise ValueError(f"BENCH_BASELINE_DECODER must be flask or simdjson, got {decoder!r}")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024

    @app.get("/healthz")
    def health() -> ResponseReturnValue:
        return jsonify({"status": "ok"})

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str) -> ResponseReturnValue:  # noqa: ARG001 (Flask passes the URL part by name)
        if decoder == "simdjson":
            seen = isinstance(simdjson.Parser().parse(request.get_data()), simdjson.Object)
        else:
            seen = isinstance(request.get_json(force=True), dict)
        return jsonify({"cards": [], "seen": seen})

    return app


app = create_app()
