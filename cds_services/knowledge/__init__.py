"""The ixabepilone knowledge base: thresholds, dose table, interacting drugs, sources.

Knowledge is data (``ixabepilone.json``) so a pharmacist can review it without
reading code. It is loaded and validated once, when the service starts: an
unknown field, a missing or unknown source key, a bad indicator or a drug id
the mapping layer does not produce fails the start with a message naming the
entry, instead of a rule silently reading nothing at the bedside.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fhir_mappings.drugs import known_drug_ids

__all__ = [
    "DRUG_IDS",
    "HepaticBand",
    "Hypersensitivity",
    "Interaction",
    "Knowledge",
    "KnowledgeError",
    "Source",
    "Threshold",
    "load_knowledge",
]

DEFAULT_PATH = Path(__file__).with_name("ixabepilone.json")
CODE_SYSTEM = "urn:ixabepilone-cds:rules"
INDICATORS = ("info", "warning", "critical")

# The ids fhir_mappings puts in DrugUse.drugs / Allergy.substances. A knowledge
# entry for any other id could never match, so it is an error, not a no-op.
DRUG_IDS = known_drug_ids()

RULE_CODES = (
    "neutrophils-low",
    "platelets-low",
    "hepatic-combination",
    "hepatic-monotherapy",
    "hepatic-impairment-condition",
    "hypersensitivity",
    "pregnancy",
    "breastfeeding",
    "cyp3a4-strong-inhibitor",
    "cyp3a4-strong-inducer",
    "cyp3a4-other",
    "labs-missing",
    "dose-check",
    "premedication-missing",
    "radiation-recall",
    "live-vaccine",
    "neuropathy-risk",
    "check-unavailable",
)

THRESHOLD_KEYS = (
    "anc-min",
    "wbc-min",
    "platelets-min",
    "fever-min",
    "fever-window",
    "combination-transaminase-x-uln",
    "combination-bilirubin-x-uln",
    "standard-dose",
    "strong-inhibitor-dose",
    "inhibitor-washout",
    "inducer-max-dose",
    "bsa-cap",
    "dose-tolerance",
    "radiotherapy-window",
    "live-vaccine-window",
    "contraception-female",
    "contraception-male",
    "breastfeeding-after",
    "regimen-window",
)
FRESHNESS_KEYS = ("neutrophils", "wbc", "platelets", "ast", "alt", "bilirubin", "height", "weight", "pregnancy-test")
ULN_KEYS = ("ast", "alt", "bilirubin")

INTERACTION_CLASSES = (
    "strong-inhibitor",
    "strong-inducer",
    "moderate-inhibitor",
    "weak-inhibitor",
    "moderate-inducer",
    "weak-inducer",
    "food-inhibitor",
)
STRONG_CLASSES = ("strong-inhibitor", "strong-inducer")


class KnowledgeError(ValueError):
    """The knowledge file is wrong; the message names the entry."""


@dataclass(frozen=True)
class Source:
    key: str
    label: str
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Threshold:
    """A number with its unit and where it comes from.

    ``judgment`` marks a setting chosen by this project (a window, a margin)
    rather than read from a source; cards say so.
    """

    key: str
    value: float
    unit: str
    source: str
    section: str
    judgment: bool = False
    note: str | None = None

    def cite(self) -> str:
        """"[L §4]" or "[project setting]"."""
        return "[project setting]" if self.judgment else f"[{self.source} {self.section}]"


@dataclass(frozen=True)
class RuleInfo:
    code: str
    display: str
    source: str
    section: str


@dataclass(frozen=True)
class HepaticBand:
    """One row of the label's monotherapy hepatic table: both limits must hold."""

    transaminase_max_x_uln: float
    bilirubin_max_x_uln: float
    dose_mg_per_m2: float
    dose_text: str
    source: str
    section: str


@dataclass(frozen=True)
class Interaction:
    drug: str
    cls: str  # one of INTERACTION_CLASSES
    source: str
    section: str
    note: str | None = None


@dataclass(frozen=True)
class Citation:
    """A small cited entry (combination partner, hepatic 'beyond' row, hypersensitivity)."""

    key: str
    source: str
    section: str
    note: str | None = None
    indicator: str | None = None
    dose_text: str | None = None
    judgment: bool = False


@dataclass(frozen=True)
class Hypersensitivity:
    """What a recorded reaction to one substance means, by how severe it was [L §4; §2.3].

    Severe: criticality high, a severe reaction, or anaphylaxis; not severe:
    recorded as low criticality or mild/moderate; unknown: neither said.
    """

    key: str
    severe: str
    unknown: str
    not_severe: str
    source: str
    section: str
    note: str
    judgment: bool = False

    def indicator(self, severity: str) -> str:
        """The card indicator for "severe", "unknown" or "not_severe"."""
        return {"severe": self.severe, "unknown": self.unknown, "not_severe": self.not_severe}[severity]


@dataclass(frozen=True)
class PremedDrug:
    drug: str
    display: str
    source: str
    section: str
    rxnorm: str | None = None
    dose_mg: float | None = None
    route: str | None = None
    timing: str | None = None
    note: str | None = None
    judgment: bool = False


@dataclass(frozen=True)
class Premedication:
    h1: frozenset[str]
    h2: frozenset[str]
    never_suggest: frozenset[str]
    suggest_h1: PremedDrug
    suggest_h2: PremedDrug
    corticosteroid: PremedDrug


@dataclass(frozen=True)
class Knowledge:
    version: str
    code_system: str
    sources: Mapping[str, Source]
    rules: Mapping[str, RuleInfo]
    thresholds: Mapping[str, Threshold]
    freshness: Mapping[str, Threshold]  # days per analyte key (+ "pregnancy-test")
    uln_defaults: Mapping[str, Threshold]
    hepatic_bands: tuple[HepaticBand, ...]
    hepatic_beyond: Citation
    combination_partners: Mapping[str, Citation]
    interactions: Mapping[str, Interaction]
    premedication: Premedication
    hypersensitivity: Mapping[str, Hypersensitivity]

    def rule_display(self, code: str) -> str:
        info = self.rules.get(code)
        return info.display if info else code

    def rule(self, code: str) -> RuleInfo:
        return self.rules[code]

    def value(self, key: str) -> float:
        return self.thresholds[key].value

    @property
    def interacting_drugs(self) -> frozenset[str]:
        """Every drug id whose order should trigger a check of ixabepilone drafts."""
        return frozenset(self.interactions) | frozenset(self.combination_partners)

    def drugs_of_class(self, *classes: str) -> frozenset[str]:
        return frozenset(d for d, i in self.interactions.items() if i.cls in classes)


# --------------------------------------------------------------------------- parsing


def _obj(value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KnowledgeError(f"{where}: expected an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise KnowledgeError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [k for k in required if k not in value]
    if missing:
        raise KnowledgeError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    return value


def _map(value: Any, where: str) -> dict[str, Any]:
    """An object whose keys are ids (sources, drugs), not a fixed field set."""
    if not isinstance(value, dict):
        raise KnowledgeError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _str(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeError(f"{where}: expected a non-empty string")
    return value


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise KnowledgeError(f"{where}: expected a number")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise KnowledgeError(f"{where}: expected true or false")
    return value


def _drug(value: Any, where: str) -> str:
    drug = _str(value, where)
    if drug not in DRUG_IDS:
        raise KnowledgeError(f"{where}: {drug!r} is not a known drug id")
    return drug  # type: ignore[return-value]


class _Parser:
    def __init__(self, sources: Mapping[str, Source]):
        self.sources = sources

    def source(self, value: Any, where: str) -> str:
        key = _str(value, f"{where}.source")
        if key not in self.sources:
            raise KnowledgeError(f"{where}.source: unknown source key {key!r} (known: {', '.join(self.sources)})")
        return key  # type: ignore[return-value]

    def threshold(self, key: str, raw: Any, where: str) -> Threshold:
        o = _obj(raw, where, ("value", "unit", "source", "section"), ("judgment", "note"))
        return Threshold(
            key=key,
            value=_num(o["value"], f"{where}.value"),
            unit=_str(o["unit"], f"{where}.unit"),  # type: ignore[arg-type]
            source=self.source(o["source"], where),
            section=_str(o["section"], f"{where}.section"),  # type: ignore[arg-type]
            judgment=_bool(o.get("judgment", False), f"{where}.judgment"),
            note=_str(o.get("note"), f"{where}.note", optional=True),
        )

    def thresholds(self, raw: Any, where: str, keys: tuple[str, ...]) -> Mapping[str, Threshold]:
        o = _obj(raw, where, keys)
        return MappingProxyType({k: self.threshold(k, o[k], f"{where}.{k}") for k in keys})

    def premed(self, raw: Any, where: str) -> PremedDrug:
        o = _obj(
            raw,
            where,
            ("drug", "display", "source", "section"),
            ("rxnorm", "dose_mg", "route", "timing", "note", "judgment"),
        )
        return PremedDrug(
            drug=_drug(o["drug"], f"{where}.drug"),
            display=_str(o["display"], f"{where}.display"),  # type: ignore[arg-type]
            source=self.source(o["source"], where),
            section=_str(o["section"], f"{where}.section"),  # type: ignore[arg-type]
            rxnorm=_str(o.get("rxnorm"), f"{where}.rxnorm", optional=True),
            dose_mg=_num(o["dose_mg"], f"{where}.dose_mg") if "dose_mg" in o else None,
            route=_str(o.get("route"), f"{where}.route", optional=True),
            timing=_str(o.get("timing"), f"{where}.timing", optional=True),
            note=_str(o.get("note"), f"{where}.note", optional=True),
            judgment=_bool(o.get("judgment", False), f"{where}.judgment"),
        )


def _drug_list(raw: Any, where: str) -> frozenset[str]:
    if not isinstance(raw, list) or not raw:
        raise KnowledgeError(f"{where}: expected a non-empty list of drug ids")
    return frozenset(_drug(d, f"{where}[{i}]") for i, d in enumerate(raw))


def parse_knowledge(data: Any) -> Knowledge:
    """Validate the JSON document and build :class:`Knowledge` (raises KnowledgeError)."""
    top = _obj(
        data,
        "knowledge",
        (
            "version",
            "code_system",
            "sources",
            "rules",
            "thresholds",
            "freshness_days",
            "uln_defaults",
            "hepatic_bands",
            "hepatic_beyond",
            "combination_partner",
            "interactions",
            "premedication",
            "hypersensitivity",
        ),
    )
    version = _str(top["version"], "version")
    code_system = _str(top["code_system"], "code_system")
    if code_system != CODE_SYSTEM:
        raise KnowledgeError(f"code_system: must be {CODE_SYSTEM!r} (cards' source.topic system), got {code_system!r}")

    sources: dict[str, Source] = {}
    for key, raw in _map(top["sources"], "sources").items():
        where = f"sources.{key}"
        o = _obj(raw, where, ("label", "url"), ("note",))
        sources[key] = Source(
            key=key,
            label=_str(o["label"], f"{where}.label"),  # type: ignore[arg-type]
            url=_str(o["url"], f"{where}.url", optional=True),
            note=_str(o.get("note"), f"{where}.note", optional=True),
        )
    if not sources:
        raise KnowledgeError("sources: at least one source is required")
    p = _Parser(MappingProxyType(sources))

    raw_rules = _obj(top["rules"], "rules", RULE_CODES)
    rules = {}
    for code in RULE_CODES:
        where = f"rules.{code}"
        o = _obj(raw_rules[code], where, ("display", "source", "section"))
        rules[code] = RuleInfo(
            code=code,
            display=_str(o["display"], f"{where}.display"),  # type: ignore[arg-type]
            source=p.source(o["source"], where),
            section=_str(o["section"], f"{where}.section"),  # type: ignore[arg-type]
        )

    thresholds = p.thresholds(top["thresholds"], "thresholds", THRESHOLD_KEYS)
    freshness = p.thresholds(top["freshness_days"], "freshness_days", FRESHNESS_KEYS)
    uln_defaults = p.thresholds(top["uln_defaults"], "uln_defaults", ULN_KEYS)

    if not isinstance(top["hepatic_bands"], list) or not top["hepatic_bands"]:
        raise KnowledgeError("hepatic_bands: expected a non-empty list")
    bands = []
    for i, raw in enumerate(top["hepatic_bands"]):
        where = f"hepatic_bands[{i}]"
        o = _obj(
            raw,
            where,
            ("transaminase_max_x_uln", "bilirubin_max_x_uln", "dose_mg_per_m2", "dose_text", "source", "section"),
        )
        bands.append(
            HepaticBand(
                transaminase_max_x_uln=_num(o["transaminase_max_x_uln"], f"{where}.transaminase_max_x_uln"),
                bilirubin_max_x_uln=_num(o["bilirubin_max_x_uln"], f"{where}.bilirubin_max_x_uln"),
                dose_mg_per_m2=_num(o["dose_mg_per_m2"], f"{where}.dose_mg_per_m2"),
                dose_text=_str(o["dose_text"], f"{where}.dose_text"),  # type: ignore[arg-type]
                source=p.source(o["source"], where),
                section=_str(o["section"], f"{where}.section"),  # type: ignore[arg-type]
            )
        )
    for a, b in zip(bands, bands[1:]):
        if b.transaminase_max_x_uln < a.transaminase_max_x_uln or b.bilirubin_max_x_uln < a.bilirubin_max_x_uln:
            raise KnowledgeError("hepatic_bands: rows must be ordered from the mildest to the most severe")

    o = _obj(top["hepatic_beyond"], "hepatic_beyond", ("dose_text", "source", "section"))
    hepatic_beyond = Citation(
        key="beyond",
        source=p.source(o["source"], "hepatic_beyond"),
        section=_str(o["section"], "hepatic_beyond.section"),  # type: ignore[arg-type]
        dose_text=_str(o["dose_text"], "hepatic_beyond.dose_text"),
    )

    partners = {}
    for drug, raw in _map(top["combination_partner"], "combination_partner").items():
        where = f"combination_partner.{drug}"
        _drug(drug, where)
        o = _obj(raw, where, ("source", "section"), ("note",))
        partners[drug] = Citation(
            key=drug,
            source=p.source(o["source"], where),
            section=_str(o["section"], f"{where}.section"),  # type: ignore[arg-type]
            note=_str(o.get("note"), f"{where}.note", optional=True),
        )

    interactions = {}
    for drug, raw in _map(top["interactions"], "interactions").items():
        where = f"interactions.{drug}"
        _drug(drug, where)
        o = _obj(raw, where, ("class", "source", "section"), ("note",))
        cls = _str(o["class"], f"{where}.class")
        if cls not in INTERACTION_CLASSES:
            raise KnowledgeError(f"{where}.class: {cls!r} is not one of {', '.join(INTERACTION_CLASSES)}")
        interactions[drug] = Interaction(
            drug=drug,
            cls=cls,  # type: ignore[arg-type]
            source=p.source(o["source"], where),
            section=_str(o["section"], f"{where}.section"),  # type: ignore[arg-type]
            note=_str(o.get("note"), f"{where}.note", optional=True),
        )

    o = _obj(
        top["premedication"],
        "premedication",
        ("h1", "h2", "never_suggest", "suggest_h1", "suggest_h2", "corticosteroid"),
    )
    premedication = Premedication(
        h1=_drug_list(o["h1"], "premedication.h1"),
        h2=_drug_list(o["h2"], "premedication.h2"),
        never_suggest=_drug_list(o["never_suggest"], "premedication.never_suggest"),
        suggest_h1=p.premed(o["suggest_h1"], "premedication.suggest_h1"),
        suggest_h2=p.premed(o["suggest_h2"], "premedication.suggest_h2"),
        corticosteroid=p.premed(o["corticosteroid"], "premedication.corticosteroid"),
    )
    for name, drug, group in (
        ("suggest_h1", premedication.suggest_h1, premedication.h1),
        ("suggest_h2", premedication.suggest_h2, premedication.h2),
    ):
        if drug.drug not in group:
            raise KnowledgeError(f"premedication.{name}: {drug.drug!r} is not in its antagonist list")
        if drug.drug in premedication.never_suggest:
            raise KnowledgeError(f"premedication.{name}: {drug.drug!r} is listed in never_suggest")
        if not drug.rxnorm or drug.dose_mg is None or not drug.route:
            raise KnowledgeError(f"premedication.{name}: rxnorm, dose_mg and route are required for a suggestion")

    steroid = premedication.corticosteroid
    if not steroid.rxnorm or steroid.dose_mg is None or not steroid.route:
        raise KnowledgeError("premedication.corticosteroid: rxnorm, dose_mg and route are required for a suggestion")

    hypersensitivity = {}
    for drug, raw in _map(top["hypersensitivity"], "hypersensitivity").items():
        where = f"hypersensitivity.{drug}"
        _drug(drug, where)
        o = _obj(raw, where, ("severe", "unknown", "not_severe", "source", "section", "note"), ("judgment",))
        levels = {}
        for level in ("severe", "unknown", "not_severe"):
            indicator = _str(o[level], f"{where}.{level}")
            if indicator not in INDICATORS:
                raise KnowledgeError(f"{where}.{level}: {indicator!r} is not one of {', '.join(INDICATORS)}")
            levels[level] = indicator
        hypersensitivity[drug] = Hypersensitivity(
            key=drug,
            source=p.source(o["source"], where),
            section=_str(o["section"], f"{where}.section"),  # type: ignore[arg-type]
            note=_str(o["note"], f"{where}.note"),  # type: ignore[arg-type]
            judgment=_bool(o.get("judgment", False), f"{where}.judgment"),
            **levels,
        )

    return Knowledge(
        version=version,  # type: ignore[arg-type]
        code_system=code_system,  # type: ignore[arg-type]
        sources=MappingProxyType(sources),
        rules=MappingProxyType(rules),
        thresholds=thresholds,
        freshness=freshness,
        uln_defaults=uln_defaults,
        hepatic_bands=tuple(bands),
        hepatic_beyond=hepatic_beyond,
        combination_partners=MappingProxyType(partners),
        interactions=MappingProxyType(interactions),
        premedication=premedication,
        hypersensitivity=MappingProxyType(hypersensitivity),
    )


def load_knowledge(path: str | Path | None = None) -> Knowledge:
    """Read and validate the knowledge file (the packaged one when ``path`` is None)."""
    file = Path(path) if path else DEFAULT_PATH
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KnowledgeError(f"{file}: cannot read knowledge file: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise KnowledgeError(f"{file}: not valid JSON: {exc}") from exc
    try:
        return parse_knowledge(data)
    except KnowledgeError as exc:
        raise KnowledgeError(f"{file.name}: {exc}") from None
