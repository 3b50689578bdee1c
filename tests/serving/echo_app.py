"""A WSGI app that answers with what gunicorn put in its environ, to test
what gunicorn.conf.py makes gunicorn trust (forwarded headers)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = json.dumps({
        "scheme": environ["wsgi.url_scheme"],
        "script_name": environ.get("SCRIPT_NAME", ""),
        "path_info": environ.get("PATH_INFO", ""),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
