"""The shared objects of one app: made once in the factory, closed once.

Views reach them through :func:`runtime`, never through module globals, so two
apps (tests create many) never share a database, a session or a clock.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app

from .config import Settings
from .feedback import FeedbackStore
from .fhir_client import FhirClient

EXTENSION = "ixabepilone_cds"


@dataclass
class Runtime:
    settings: Settings
    kb: Any
    feedback: FeedbackStore
    fhir: FhirClient
    clock: Callable[[], datetime]
    # None only when CDS_ALLOW_UNAUTHENTICATED=true.
    verifier: Any = None
    clients: Any = None
    # The cards-served log (cds_services.analytics.ServedLog), on the feedback store's engine.
    analytics: Any = None

    def close(self) -> None:
        self.fhir.close()
        if self.analytics is not None:
            self.analytics.close()  # before the engine it writes through is disposed
        self.feedback.close()


def runtime() -> Runtime:
    """The app's shared resources, set once by create_app."""
    found: Runtime = current_app.extensions[EXTENSION]
    return found
