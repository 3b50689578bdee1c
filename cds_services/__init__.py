"""The CDS Hooks 2.0 side of the service: protocol, services, cards, feedback.

HTTP and FHIR I/O live here at the edge (``api``, ``prefetch``,
``fhir_client``); the clinical rules (``rules``) and the knowledge they read
(``knowledge``) are pure and never import Flask or ``requests``.
"""
