"""The services we offer and the data each asks the EHR to prefetch.

Both services run the same checks; they differ in the hook they answer and so
in which draft orders they act on (see ``orders_in_scope`` in :mod:`cds_services.pipeline`). Their ids
differ per hook, as discovery requires unique ids.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_mappings.codes import observation_query_codes, procedure_query_codes

ORDER_SELECT = "order-select"
ORDER_SIGN = "order-sign"

# Prefetch keys, one per kind of record data the checks read (fhir_mappings.facts.DATA_KINDS).
# Spec 2.0 §prefetch-query-restrictions RECOMMENDS a subset every EHR can
# fill: {{context.x}} tokens, reference and token-equality parameters, _sort
# and _count. So no _include: the Medications that orders reference by id are
# read with one batched search when they were neither contained nor sent
# (prefetch.py). A date filter cannot be expressed with a context token, so
# recent data is asked for by sorting newest first and counting; the
# freshness windows are applied by the rules. Every search names a _count so
# a server's small default page (often 20) does not cut a long medication
# list; a Bundle that still has a next page is followed or reported.
def prefetch_templates() -> dict[str, str]:
    pid = "{{context.patientId}}"
    return {
        "patient": f"Patient/{pid}",
        # completed and stopped too: a strong CYP3A4 inhibitor stopped in the last week and an ixabepilone
        # cycle given in the last 3 weeks still matter (issue 12 items 4 and 6); the rules apply the windows.
        "medicationRequests": f"MedicationRequest?patient={pid}&status=active,on-hold,completed,stopped&_count=100",
        "medicationStatements": f"MedicationStatement?patient={pid}"
        "&status=active,intended,completed,stopped&_count=100",
        "labs": f"Observation?patient={pid}&code={','.join(observation_query_codes('labs'))}"
        "&_sort=-date&_count=100",
        "vitals": f"Observation?patient={pid}&code={','.join(observation_query_codes('vitals'))}"
        "&_sort=-date&_count=50",
        "reproductive": f"Observation?patient={pid}"
        f"&code={','.join(observation_query_codes('reproductive'))}&_sort=-date&_count=20",
        "conditions": f"Condition?patient={pid}&clinical-status=active,recurrence,relapse&_count=100",
        "allergies": f"AllergyIntolerance?patient={pid}&_count=100",
        "procedures": f"Procedure?patient={pid}&code={','.join(procedure_query_codes())}&_count=50",
        "immunizations": f"Immunization?patient={pid}&_sort=-date&_count=50",
    }


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str


SERVICES: tuple[Service, ...] = (
    Service(
        id="ixabepilone-order-select",
        hook=ORDER_SELECT,
        title="Ixabepilone (Ixempra) order safety",
        description=(
            "When an ixabepilone order is selected, or an order that interacts with a "
            "drafted ixabepilone order: contraindications (neutrophils, platelets, "
            "hepatic function with capecitabine, hypersensitivity, pregnancy), hepatic "
            "dosing, CYP3A4 interactions, dose for body surface area, premedication. "
            "Also when a strong CYP3A4 inhibitor or inducer or a live vaccine is selected "
            "for a patient already on ixabepilone (an active order, or one given in the "
            "last 21 days). A dose still being written is checked only when readable."
        ),
    ),
    Service(
        id="ixabepilone-order-sign",
        hook=ORDER_SIGN,
        title="Ixabepilone (Ixempra) order safety at signing",
        description=(
            "Before ixabepilone orders are signed: the same checks over every draft "
            "order, so nothing reaches the pharmacy unchecked; and before a strong "
            "CYP3A4 inhibitor or inducer or a live vaccine is signed for a patient "
            "already on ixabepilone (an active order, or one given in the last 21 days)."
        ),
    ),
)

USAGE_REQUIREMENTS = (
    "Send every prefetch key, or fhirServer with an access token that can read "
    "Patient, MedicationRequest, MedicationStatement, Observation, Condition, "
    "AllergyIntolerance, Procedure and Immunization for the patient. Draft "
    "orders must be MedicationRequests coded with RxNorm or NDC, or named."
)

KNOWLEDGE_EXTENSION = "org.ixabepilone-cds.knowledge"


def find_service(service_id: str) -> Service | None:
    return next((s for s in SERVICES if s.id == service_id), None)


def discovery_document(knowledge_version: str, knowledge_sources: Mapping[str, str | None]) -> dict[str, Any]:
    """The body of GET /cds-services."""
    prefetch = prefetch_templates()
    return {
        "services": [
            {
                "hook": service.hook,
                "id": service.id,
                "title": service.title,
                "description": f"{service.description} Knowledge version {knowledge_version}.",
                "prefetch": prefetch,
                "usageRequirements": USAGE_REQUIREMENTS,
                "extension": {
                    KNOWLEDGE_EXTENSION: {
                        "version": knowledge_version,
                        # A source without a URL (P, this project's settings) is left out:
                        # JSON elements SHALL NOT be null (CDS Hooks 2.0 §use-of-json).
                        "sources": {key: url for key, url in knowledge_sources.items() if url},
                    }
                },
            }
            for service in SERVICES
        ]
    }
