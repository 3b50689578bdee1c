"""Trust and safety building blocks, pure of Flask: who may call us
(``clients``, ``jwks``, ``tokens``, ``replay``), which FHIR servers we may call
(``fhir_access``), and what we record about each call (``audit``).

The app factory builds one ``JwksCache``, one replay store and one
``ClientVerifier`` and reaches them through the app; ``testing`` holds the
token signer the test suites share.
"""
