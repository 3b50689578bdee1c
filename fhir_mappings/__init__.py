"""FHIR R4 resources to plain clinical facts.

Nothing here does I/O or knows about Flask: every function takes parsed
resources (``fhir.resources.R4B`` models) and returns the frozen dataclasses
in :mod:`fhir_mappings.facts`, so the rules can be tested with plain data.
"""
