"""The shared objects of one app: made once in the factory, closed once.

Views reach them through :func:`runtime`, never through module globals, so two
apps (tests create many) never share a database, a session or a clock.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from flask import current_app

from .analytics import ServedLog
from .config import Settings
from .feedback import FeedbackStore
from .fhir_client import FhirClient
from .knowledge import Knowledge

if TYPE_CHECKING:  # imported by create_app only when authentication is on
    from .security.clients import TrustedClients
    from .security.tokens import ClientVerifier

EXTENSION = "ixabepilone_cds"


@dataclass
class Runtime:
    settings: Settings
    kb: Knowledge
    feedback: FeedbackStore
    fhir: FhirClient
    clock: Callable[[], datetime]
    # The cards-served log, on the feedback store's engine.
    analytics: ServedLog
    # None only when CDS_ALLOW_UNAUTHENTICATED=true.
    verifier: ClientVerifier | None = None
    clients: TrustedClients | None = None

    def close(self) -> None:
        self.fhir.close()
        self.analytics.close()  # before the engine it writes through is disposed
        self.feedback.close()


def runtime() -> Runtime:
    """The app's shared resources, set once by create_app."""
    found: Runtime = current_app.extensions[EXTENSION]
    return found
