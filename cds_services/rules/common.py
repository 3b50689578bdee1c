"""Helpers every rule shares: formatting, freshness, drug queries, standard suggestions.

Kept apart from the rules so each rule module reads as the clinical statement
it implements, and so every card formats dates, counts and citations alike.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cds_services.cards import clip
from cds_services.findings import Action, Finding, Indicator, Suggestion
from cds_services.knowledge import Knowledge, Threshold
from fhir_mappings.codes import SNOMED, UCUM
from fhir_mappings.drugs import IXABEPILONE
from fhir_mappings.facts import DrugUse, Evidence, LabValue, PatientFacts

UNAVAILABLE = "check-unavailable"  # the engine's own card: checks that could not run or read their data

OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("benefit-outweighs-risk", "Benefit outweighs risk"),
    ("patient-monitored", "Will monitor closely"),
    ("data-outdated", "Data shown is outdated or wrong"),
)

LAB_NAMES = {
    "neutrophils": "ANC",
    "wbc": "WBC",
    "platelets": "Platelets",
    "ast": "AST",
    "alt": "ALT",
    "bilirubin": "Bilirubin",
    "height": "Height",
    "weight": "Weight",
    "temperature": "Temperature",
}

@dataclass(frozen=True)
class Draft:
    """What a rule concludes, before :func:`rule` stamps the rule's code on it.

    ``source`` and ``section`` default to the rule's own citation in the
    knowledge file; a rule that cites a narrower entry (a hypersensitivity
    substance, the hepatic table's last row) names it here.
    """

    indicator: Indicator
    summary: str
    detail: str
    source: str | None = None
    section: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    selection_behavior: str = "at-most-one"


RuleBody = Callable[[PatientFacts, Knowledge], Iterable[Draft | Finding]]


@dataclass(frozen=True)
class Rule:
    """A registered rule: ``(facts, kb) -> findings``, known by its public ``code``.

    The code is written once, in the ``@rule("...")`` decorator: every
    :class:`Draft` the body yields becomes a :class:`Finding` with it (and with
    the rule's citation from the knowledge file). A body may also yield a
    ready Finding, such as a check-unavailable item from :func:`unavailable`.
    """

    code: str
    body: RuleBody

    def __call__(self, facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
        for item in self.body(facts, kb):
            yield item if isinstance(item, Finding) else make(kb, self.code, item)

    @property
    def __name__(self) -> str:
        return self.body.__name__


def rule(code: str) -> Callable[[RuleBody], Rule]:
    """Register a rule body under its public code (the cards' source.topic.code)."""

    def register(body: RuleBody) -> Rule:
        return Rule(code, body)

    return register


# ----------------------------------------------------------------- formatting


def day(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d") if dt else "date unknown"


def count(value: float) -> str:
    """1234.0 -> "1,234"; counts are shown whole."""
    return f"{value:,.0f}"


def num(value: float, places: int = 2) -> str:
    """Up to ``places`` decimals without trailing zeros: 2.50 -> "2.5", 40.0 -> "40"."""
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def names(items: Iterable[str], limit: int = 3) -> str:
    """"a, b, c +2 more": keeps summaries short however many drugs matched."""
    items = list(dict.fromkeys(items))
    shown = ", ".join(items[:limit])
    return f"{shown} +{len(items) - limit} more" if len(items) > limit else shown


# Line breaks and other control characters: a newline in a display name could
# start a heading, a list, a table or a code block in the card's Markdown.
_MD_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# ASCII punctuation that opens or closes Markdown inline: backslash, code, emphasis,
# links and images, raw HTML and <autolinks>, entities, tables, strikethrough, and
# the ':' of GFM's extended autolinks (http://, mailto:, xmpp:). CommonMark lets any
# ASCII punctuation be backslash-escaped, and renders it as the character itself.
_MD_INLINE = re.compile(r"([\\`*_\[\]{}<>!|~&:])")
# What starts a block when it opens a line (the text may follow "- " in a list item):
# heading, quote, list item, thematic break, setext underline, and an ordered list
# ("1. ", not "3.4 10*3/uL": CommonMark wants a space or the end after the marker).
_MD_BLOCK_START = re.compile(r"^([#>+\-=])|^(\d{1,9})([.)])(?=\s|$)")
# GFM autolinks "www.x.y" and e-mail addresses with no markup at all: an escaped
# dot after "www" stops the first; the second is found in the rendered text
# whatever the escaping, so a zero-width space before "@" breaks the address.
_MD_WWW = re.compile(r"(?i)\b(www)\.")


def escape_md(value: object) -> str:
    """Request text made safe to put into card Markdown: it renders as the same
    characters and can never become a link, an image, HTML, a heading or a list.

    Everything the EHR sends is untrusted (drug display names, allergy and
    condition labels, lab values as recorded, ids, problem sentences that
    quote them): ``[x](javascript:alert(1))`` in a display name would otherwise
    be a link in the clinician's card. Use it at every place a rule puts such
    text into a ``detail``; our own wording and citations are not escaped.
    Summaries, labels and action descriptions are plain text (CDS Hooks 2.0
    §card-attributes) and need none of this.
    """
    text = _MD_CONTROL.sub(" ", str(value)).strip()
    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_BLOCK_START.sub(lambda m: f"\\{m.group(1)}" if m.group(1) else f"{m.group(2)}\\{m.group(3)}", text)
    text = _MD_WWW.sub(r"\1\\.", text)
    return text.replace("@", "\u200b@")


def cite(source: str, section: str) -> str:
    return f"[{source} {section}]"


# ----------------------------------------------------------------- time and labs


def age_days(facts: PatientFacts, when: datetime | None) -> float | None:
    if when is None:
        return None
    return (facts.now - when).total_seconds() / 86400


def ago(facts: PatientFacts, when: datetime | None) -> str:
    age = age_days(facts, when)
    if age is None:
        return "date unknown"
    if age < 1:
        return "today" if age >= 0 else "in the future"
    return f"{int(age)} d ago"


def usable(lab: LabValue | None) -> LabValue | None:
    """The lab when it has a value; a value-less lab (a ``problem``) is never read as normal."""
    return lab if lab is not None and lab.value is not None else None


# ----------------------------------------------------------------- qualified values
# A result the lab reported only as a bound ("<2.0", ">400") settles a threshold only when
# the bound lies on the right side of it; otherwise the answer is None: "cannot verify".


def is_below(value: float, comparator: str | None, limit: float) -> bool | None:
    """Is a result (``value`` with the lab's ``comparator``) below ``limit``? None: the bound does not say."""
    if comparator is None:
        return value < limit
    if comparator == "<":
        return True if value <= limit else None
    if comparator == "<=":
        return True if value < limit else None
    return False if value >= limit else None  # ">" or ">=": at least the bound


def is_above(value: float, comparator: str | None, limit: float) -> bool | None:
    """Is a result (``value`` with the lab's ``comparator``) above ``limit``? None: the bound does not say."""
    if comparator is None:
        return value > limit
    if comparator == ">":
        return True if value >= limit else None
    if comparator == ">=":
        return True if value > limit else None
    return False if value <= limit else None  # "<" or "<=": at most the bound


def below(lab: LabValue, limit: float) -> bool | None:
    """Is the result below ``limit``? True, False, or None when the lab's bound does not say."""
    assert lab.value is not None
    return is_below(lab.value, lab.comparator, limit)


def at_least(lab: LabValue, limit: float) -> bool | None:
    """Is the result at or above ``limit``? (the negation of :func:`below`)."""
    answer = below(lab, limit)
    return None if answer is None else not answer


def shown(lab: LabValue, *, whole: bool = False, scale: float = 1.0) -> str:
    """The value as the lab reported it, in the canonical unit: "80,000", "<2,000", ">10"."""
    assert lab.value is not None
    value = lab.value / scale
    text = count(value) if whole else num(value)
    return f"{lab.comparator}{text}" if lab.comparator else text


def lab_status(lab: LabValue) -> str:
    """" (preliminary)" for a result that is not final yet, else ""."""
    return f" ({lab.status})" if lab.preliminary else ""


def window(kb: Knowledge, analyte: str) -> Threshold:
    return kb.freshness[analyte]


def is_fresh(facts: PatientFacts, lab: LabValue | None, kb: Knowledge, analyte: str | None = None) -> bool:
    """True when the lab has a value dated inside its freshness window."""
    lab = usable(lab)
    if lab is None or lab.effective is None:
        return False
    age = age_days(facts, lab.effective)
    return age is not None and age <= window(kb, analyte or lab.analyte).value


def staleness(facts: PatientFacts, lab: LabValue, kb: Knowledge) -> str | None:
    """A sentence when the lab is older than its window (or undated), else None."""
    if is_fresh(facts, lab, kb):
        return None
    limit = window(kb, lab.analyte)
    if lab.effective is None:
        return f"its date is unknown, so it may not reflect today (window {num(limit.value)} d {limit.cite()})"
    return (
        f"it is {int(age_days(facts, lab.effective) or 0)} days old, older than the "
        f"{num(limit.value)}-day window {limit.cite()}: repeat before dosing"
    )


def lab_text(facts: PatientFacts, lab: LabValue, *, whole: bool = False) -> str:
    """"ANC 1,200 cells/mm3 on 2026-11-24 (1 d ago), Observation/x"; a bound keeps its comparator,
    a preliminary result says so, and a newer result without a value is named."""
    assert lab.value is not None
    value = shown(lab, whole=whole)
    ref = f", {escape_md(lab.ref)}" if lab.ref else ""
    plain = {f"{value} {lab.unit}", f"{value.replace(',', '')} {lab.unit}",
             f"{lab.comparator or ''}{lab.value:g} {lab.unit}"}
    raw = f"; recorded as {escape_md(lab.raw)}" if lab.raw and lab.raw.strip() not in plain else ""
    extra = "".join(f"; {n}" for n in (lab.note, newer_unusable_text(lab)) if n)
    return (f"{LAB_NAMES.get(lab.analyte, lab.analyte)}{lab_status(lab)} {value} {lab.unit} on {day(lab.effective)} "
            f"({ago(facts, lab.effective)}{ref}{raw}{extra})")


def newer_unusable_text(lab: LabValue) -> str | None:
    """"the newer result Observation/x of 2026-11-25 has no value (hemolysed): this one was used"."""
    newer = lab.newer_unusable
    if newer is None:
        return None
    ref = f" {escape_md(newer.ref)}" if newer.ref else ""
    return (f"the newer result{ref} of {day(newer.effective)} could not be used "
            f"({escape_md(newer.problem or 'no value')}): this one was used")


def judged(facts: PatientFacts, analyte: str, crosses: Callable[[LabValue], bool | None]) -> LabValue | None:
    """The result a threshold rule judges: a newer preliminary result when it crosses the
    threshold (or settles it where the final cannot), else the final one (README, "Which result counts")."""
    final = usable(facts.labs.get(analyte))
    preliminary = usable(facts.preliminary_labs.get(analyte))
    if preliminary is not None and (crosses(preliminary) or final is None):
        return preliminary
    return final


def ungraded(kb: Knowledge, facts: PatientFacts, lab: LabValue, threshold: str) -> Finding:
    """The check-unavailable item for a result the lab reported only as a bound that does not settle it."""
    name = LAB_NAMES.get(lab.analyte, lab.analyte)
    return unavailable(
        kb, f"{name} {shown(lab, whole=lab.unit == 'cells/mm3')} not graded",
        f"{lab_text(facts, lab, whole=lab.unit == 'cells/mm3')}: the lab reported only a bound, which does not "
        f"settle {threshold}; a measured value is needed.",
    )


# ----------------------------------------------------------------- drugs


def drug_uses(facts: PatientFacts) -> Iterator[DrugUse]:
    """Active record medications and every draft order, the ixabepilone orders excluded."""
    order_ids = {id(o) for o in facts.orders}
    for use in (*facts.medications, *facts.draft_orders):
        if id(use) in order_ids or use.drugs == frozenset({IXABEPILONE}):
            continue
        yield use


def origin_text(use: DrugUse) -> str:
    if use.origin == "draft":
        return "draft order"
    status = f" ({escape_md(use.status)})" if use.status else ""
    if use.origin == "request":
        return ("order" if use.status in ("stopped", "completed") else "active order") + status
    return "medication statement" + status


def use_line(use: DrugUse, note: str | None = None) -> str:
    parts = [f"**{escape_md(use.display)}**", origin_text(use)]
    if use.date:
        parts.append(day(use.date))
    if use.ref:
        parts.append(escape_md(use.ref))
    line = ", ".join(parts)
    return f"{line}: {note}" if note else line


def has_capecitabine(facts: PatientFacts, kb: Knowledge) -> list[DrugUse]:
    partners = frozenset(kb.combination_partners)
    return [u for u in (*facts.medications, *facts.draft_orders) if u.drugs & partners]


# ----------------------------------------------------------------- findings and suggestions


def make(kb: Knowledge, code: str, draft: Draft) -> Finding:
    """The finding of rule ``code``: its citation unless the draft names another, its summary within
    the spec's limit, override reasons on every card that asks the clinician to act."""
    info = kb.rule(code)
    return Finding(
        rule=code,
        indicator=draft.indicator,
        summary=clip(draft.summary),
        detail=draft.detail,
        source=draft.source or info.source,
        section=draft.section or info.section,
        suggestions=draft.suggestions,
        selection_behavior=draft.selection_behavior,
        override_reasons=OVERRIDE_REASONS if draft.indicator in ("warning", "critical") else (),
    )


def unavailable(kb: Knowledge, short: str, why: str) -> Finding:
    """One item for the merged check-unavailable card (see rules.evaluate).

    ``why`` is Markdown: pass request text through :func:`escape_md`."""
    return make(kb, UNAVAILABLE, Draft("info", short, f"- **{short}**: {why}"))


def delete_orders(facts: PatientFacts) -> tuple[Suggestion, ...]:
    actions = tuple(
        Action(type="delete", description=f"Remove the draft order {o.display}", resource_id=o.ref)
        for o in facts.orders
        if o.ref
    )
    if not actions:
        return ()
    label = "Cancel the ixabepilone order" if len(actions) == 1 else "Cancel the ixabepilone orders"
    return (Suggestion(label=label, actions=actions, is_recommended=True),)


def ordered_mg_per_m2(order: DrugUse, bsa: float | None) -> float | None:
    if order.dose is None:
        return None
    if order.dose.mg_per_m2 is not None:
        return order.dose.mg_per_m2
    if order.dose.mg is not None and bsa:
        return order.dose.mg / bsa
    return None


# The label's schedule [L §2]: "40 mg/m2 administered intravenously over 3 hours every
# 3 weeks". A reduced dose keeps that schedule.
INTRAVENOUS_ROUTE = {"system": SNOMED, "code": "47625008", "display": "Intravenous route"}
EVERY_3_WEEKS_OVER_3_HOURS = {
    "repeat": {"frequency": 1, "period": 3, "periodUnit": "wk", "duration": 3, "durationUnit": "h"},
}


def with_dose(resource: Mapping[str, Any], mg_per_m2: float, reason: str) -> dict[str, Any]:
    """The order's JSON with one dosage that says, structured and in text, ``mg_per_m2``
    IV over 3 hours every 3 weeks [L §2].

    Only the dosage changes (same id, medication, subject), and all of it:
    keeping the draft's own timing, route or rate next to the new text made a
    suggestion whose structure said "once a day" while its text said "every
    3 weeks", and an EHR acts on the structure.
    """
    out = copy.deepcopy(dict(resource))
    original = (out.get("dosageInstruction") or [{}])[0]
    dosage: dict[str, Any] = {}
    if isinstance(original, Mapping) and isinstance(original.get("sequence"), int):
        dosage["sequence"] = original["sequence"]
    dosage.update({
        "text": f"{num(mg_per_m2)} mg/m2 IV over 3 hours every 3 weeks ({reason})",
        "timing": copy.deepcopy(EVERY_3_WEEKS_OVER_3_HOURS),
        "route": {"coding": [dict(INTRAVENOUS_ROUTE)], "text": "intravenous"},
        "doseAndRate": [{"doseQuantity": {"value": mg_per_m2, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}}],
    })
    out["dosageInstruction"] = [dosage]
    return out


def reduce_orders(facts: PatientFacts, mg_per_m2: float, reason: str,
                  bsa: float | None = None) -> tuple[Suggestion, ...]:
    """Replace each ixabepilone draft whose dose is above ``mg_per_m2`` (needs the order's JSON)."""
    actions = []
    for order in facts.orders:
        if order.resource is None:
            continue
        current = ordered_mg_per_m2(order, bsa)
        if current is not None and current <= mg_per_m2 + 1e-9:
            continue
        actions.append(
            Action(
                type="update",
                description=f"Change {order.display} to {num(mg_per_m2)} mg/m2 ({reason})",
                resource=with_dose(order.resource, mg_per_m2, reason),
            )
        )
    if not actions:
        return ()
    label = f"Reduce ixabepilone to {num(mg_per_m2)} mg/m2"
    return (Suggestion(label=label, actions=tuple(actions), is_recommended=True),)


def since(facts: PatientFacts, days: float) -> datetime:
    return facts.now - timedelta(days=days)


# ----------------------------------------------------------------- evidence


def recent_evidence(facts: PatientFacts, items: tuple[Evidence, ...], days: float) -> list[Evidence]:
    """The events of the last ``days``, and every undated one: it could be recent, and silence would read as none."""
    start = since(facts, days)
    return [e for e in items if e.date is None or e.date >= start]


def newest(items: Iterable[Evidence]) -> Evidence | None:
    """The most recent dated record (the first of equals), or None when none is dated."""
    dated = [(e.date, e) for e in items if e.date is not None]
    return max(dated, key=lambda pair: pair[0])[1] if dated else None


def evidence_line(facts: PatientFacts, e: Evidence) -> str:
    """"- **Radiotherapy**, 2026-11-01 (20 d ago), code 108290001, Procedure/p1"."""
    parts = [f"**{escape_md(e.label)}**", f"{day(e.date)} ({ago(facts, e.date)})" if e.date else "date unknown"]
    if e.code:
        parts.append(f"code {escape_md(e.code)}")
    if e.ref:
        parts.append(escape_md(e.ref))
    return "- " + ", ".join(parts)
