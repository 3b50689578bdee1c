"""Trust and safety building blocks, pure of Flask: who may call us
(``clients``, ``jwks``, ``tokens``, ``replay``), which FHIR servers we may call
(``fhir_access``), and what we record about each call (``audit``).

The app factory builds one ``JwksCache``, one replay store and one
``ClientVerifier`` and reaches them through the app; the token signer the test
suites share is tests/signing.py, never installed.
"""
from __future__ import annotations


class ReasonError(Exception):
    """A refusal whose ``reason`` is for our log: it never holds a token, and is never sent to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
