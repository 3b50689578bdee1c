"""The stack's floor: a trivial Flask app served exactly like the real one.

``gunicorn -c gunicorn.conf.py bench.baseline_app:app`` with the same
workers, threads and access log. Its hook endpoint reads and decodes the
same JSON body and answers an empty card list, so the service's throughput
reads as a share of what gunicorn + Flask + JSON can do on this machine.
"""
from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024

    @app.get("/healthz")
    def health() -> ResponseReturnValue:
        return jsonify({"status": "ok"})

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str) -> ResponseReturnValue:  # noqa: ARG001 (Flask passes the URL part by name)
        body = request.get_json(force=True)
        return jsonify({"cards": [], "seen": isinstance(body, dict)})

    return app


app = create_app()
