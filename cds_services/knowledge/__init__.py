"""The ixabepilone knowledge base: thresholds, dose table, interacting drugs, sources.

Knowledge is data (``ixabepilone.json``) so a pharmacist can review it without
reading code. It is loaded and validated once, when the service starts, by the
typed models below (pydantic): an unknown field, a missing or unknown source
key, a bad indicator or a drug id the mapping layer does not produce fails the
start with a message naming the entry ("interactions.ketoconazole.source:
unknown source key 'X'"), instead of a rule silently reading nothing at the
bedside. The models are also what the rules read, so the type of every value
is the one that was checked.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from cds_services.findings import Indicator
from fhir_mappings.drugs import known_drug_ids

__all__ = [
    "DEFAULT_PATH",
    "DRUG_IDS",
    "HepaticBand",
    "Hypersensitivity",
    "Interaction",
    "Knowledge",
    "KnowledgeError",
    "PremedDrug",
    "Source",
    "Threshold",
    "load_knowledge",
]

DEFAULT_PATH = Path(__file__).with_name("ixabepilone.json")
CODE_SYSTEM = "urn:ixabepilone-cds:rules"

# The ids fhir_mappings puts in DrugUse.drugs / Allergy.substances. A knowledge
# entry for any other id could never match, so it is an error, not a no-op.
DRUG_IDS = known_drug_ids()

# The keys each fixed table must hold: the rules read them by name.
THRESHOLD_KEYS = (
    "anc-min", "wbc-min", "platelets-min", "fever-min", "fever-window", "combination-transaminase-x-uln",
    "combination-bilirubin-x-uln", "standard-dose", "strong-inhibitor-dose", "inhibitor-washout",
    "inducer-max-dose", "bsa-cap", "dose-tolerance", "radiotherapy-window", "live-vaccine-window",
    "contraception-female", "contraception-male", "breastfeeding-after", "regimen-window",
)
FRESHNESS_KEYS = ("neutrophils", "wbc", "platelets", "ast", "alt", "bilirubin", "height", "weight", "pregnancy-test")
ULN_KEYS = ("ast", "alt", "bilirubin")

InteractionClass = Literal[
    "strong-inhibitor", "strong-inducer", "moderate-inhibitor", "weak-inhibitor", "moderate-inducer",
    "weak-inducer", "food-inhibitor",
]
Severity = Literal["severe", "unknown", "not_severe"]


class KnowledgeError(ValueError):
    """The knowledge file is wrong; the message names the entry."""


# --------------------------------------------------------------------------- value types


def _known_drug(value: str) -> str:
    if value not in DRUG_IDS:
        raise PydanticCustomError("drug_id", "{drug} is not a known drug id", {"drug": repr(value)})
    return value


def _known_source(value: str, info: ValidationInfo) -> str:
    known: Collection[str] | None = (info.context or {}).get("sources")
    if known and value not in known:  # without sources, the sources entry is the one error to name
        raise PydanticCustomError(
            "source_key", "unknown source key {key} (known: {known})", {"key": repr(value), "known": ", ".join(known)}
        )
    return value


def _exact_keys(where_keys: Iterable[str]) -> AfterValidator:
    """A table whose keys the rules read by name: none missing, none unknown."""
    wanted = tuple(where_keys)

    def check(table: dict[str, Any]) -> dict[str, Any]:
        _check_keys(table, wanted)
        return table

    return AfterValidator(check)


def _check_keys(table: Mapping[str, Any], wanted: Collection[str]) -> None:
    unknown = sorted(set(table) - set(wanted))
    if unknown:
        raise PydanticCustomError("extra_keys", "unknown field(s) {names}", {"names": ", ".join(map(repr, unknown))})
    missing = [k for k in wanted if k not in table]
    if missing:
        raise PydanticCustomError("missing_keys", "missing field(s) {names}", {"names": ", ".join(map(repr, missing))})


Text = Annotated[str, Strict(), StringConstraints(pattern=r"\S")]  # a non-empty string
Number = Annotated[float, Strict()]  # a JSON number (an integer is one), never a string or true/false
Flag = Annotated[bool, Strict()]
DrugId = Annotated[str, Strict(), AfterValidator(_known_drug)]
SourceKey = Annotated[str, Strict(), AfterValidator(_known_source)]


class _Entry(BaseModel):
    """Every object in the file: its fields are all known, and it is read-only once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Cited(_Entry):
    source: SourceKey
    section: Text


# --------------------------------------------------------------------------- entries


class Source(_Entry):
    label: Text
    url: Text | None  # required, and null for this project's own settings (P)
    note: Text | None = None


class Threshold(_Cited):
    """A number with its unit and where it comes from.

    ``judgment`` marks a setting chosen by this project (a window, a margin)
    rather than read from a source; cards say so.
    """

    value: Number
    unit: Text
    judgment: Flag = False
    note: Text | None = None

    def cite(self) -> str:
        """ "[L §4]" or "[project setting]"."""
        return "[project setting]" if self.judgment else f"[{self.source} {self.section}]"


class RuleInfo(_Cited):
    display: Text


class HepaticBand(_Cited):
    """One row of the label's monotherapy hepatic table: both limits must hold."""

    transaminase_max_x_uln: Number
    bilirubin_max_x_uln: Number
    dose_mg_per_m2: Number
    dose_text: Text


class HepaticBeyond(_Cited):
    """Beyond the table's last row: not recommended."""

    dose_text: Text


class Partner(_Cited):
    """A combination partner (capecitabine): the boxed warning's contraindication applies."""

    note: Text | None = None


class Interaction(_Cited):
    drug: str = Field(default="", exclude=True)  # the table's key, set when the table is read
    cls: InteractionClass = Field(alias="class")
    note: Text | None = None

    @field_validator("drug", mode="before")
    @classmethod
    def _not_in_the_file(cls, _value: Any) -> Any:
        raise PydanticCustomError("extra_forbidden", "the drug is the entry's key")


class Hypersensitivity(_Cited):
    """What a recorded reaction to one substance means, by how severe it was [L §4; §2.3].

    Severe: criticality high, a severe reaction, or anaphylaxis; not severe:
    recorded as low criticality or mild/moderate; unknown: neither said.
    """

    severe: Indicator
    unknown: Indicator
    not_severe: Indicator
    note: Text
    judgment: Flag = False

    def indicator(self, severity: Severity) -> Indicator:
        """The card indicator for "severe", "unknown" or "not_severe"."""
        return {"severe": self.severe, "unknown": self.unknown, "not_severe": self.not_severe}[severity]


class PremedDrug(_Cited):
    """A premedication the service suggests: everything a draft MedicationRequest needs."""

    drug: DrugId
    display: Text
    rxnorm: Text
    dose_mg: Number
    route: Literal["PO", "IV"]  # the routes rules.premedication can code (SNOMED)
    timing: Text | None = None
    note: Text | None = None
    judgment: Flag = False


DrugGroup = Annotated[frozenset[DrugId], Field(min_length=1)]


class Premedication(_Entry):
    h1: DrugGroup
    h2: DrugGroup
    never_suggest: DrugGroup
    suggest_h1: PremedDrug
    suggest_h2: PremedDrug
    corticosteroid: PremedDrug

    @model_validator(mode="after")
    def _suggestions_fit_their_groups(self) -> Premedication:
        for name, drug, group in (("suggest_h1", self.suggest_h1, self.h1), ("suggest_h2", self.suggest_h2, self.h2)):
            if drug.drug not in group:
                raise PydanticCustomError("premedication", "{name} {drug} is not in its antagonist list",
                                          {"name": name, "drug": repr(drug.drug)})
            if drug.drug in self.never_suggest:
                raise PydanticCustomError("premedication", "{name} {drug} is listed in never_suggest",
                                          {"name": name, "drug": repr(drug.drug)})
        return self


def _ordered(bands: tuple[HepaticBand, ...]) -> tuple[HepaticBand, ...]:
    for a, b in itertools.pairwise(bands):
        if b.transaminase_max_x_uln < a.transaminase_max_x_uln or b.bilirubin_max_x_uln < a.bilirubin_max_x_uln:
            raise PydanticCustomError("order", "rows must be ordered from the mildest to the most severe")
    return bands


def _rule_table(table: dict[str, RuleInfo], info: ValidationInfo) -> dict[str, RuleInfo]:
    _check_keys(table, (info.context or {}).get("rule_codes", ()))
    return table


def _one_source_at_least(sources: dict[str, Source]) -> dict[str, Source]:
    if not sources:
        raise PydanticCustomError("sources", "at least one source is required")
    return sources


class Knowledge(_Entry):
    """The whole file. Tables are read-only mappings: the rules look entries up by key."""

    version: Text
    code_system: str
    sources: Annotated[dict[str, Source], AfterValidator(_one_source_at_least)]
    rules: Annotated[dict[str, RuleInfo], AfterValidator(_rule_table)]
    thresholds: Annotated[dict[str, Threshold], _exact_keys(THRESHOLD_KEYS)]
    freshness: Annotated[dict[str, Threshold], _exact_keys(FRESHNESS_KEYS)] = Field(alias="freshness_days")
    uln_defaults: Annotated[dict[str, Threshold], _exact_keys(ULN_KEYS)]
    hepatic_bands: Annotated[tuple[HepaticBand, ...], Field(min_length=1), AfterValidator(_ordered)]
    hepatic_beyond: HepaticBeyond
    combination_partners: dict[DrugId, Partner] = Field(alias="combination_partner")
    interactions: dict[DrugId, Interaction]
    premedication: Premedication
    hypersensitivity: dict[DrugId, Hypersensitivity]

    @field_validator("code_system")
    @classmethod
    def _cards_topic_system(cls, value: str) -> str:
        if value != CODE_SYSTEM:
            raise PydanticCustomError(
                "code_system", "must be {expected} (cards' source.topic system), got {got}",
                {"expected": repr(CODE_SYSTEM), "got": repr(value)},
            )
        return value

    @field_validator("interactions")
    @classmethod
    def _keyed(cls, table: dict[str, Interaction]) -> dict[str, Interaction]:
        return {drug: entry.model_copy(update={"drug": drug}) for drug, entry in table.items()}

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


# --------------------------------------------------------------------------- loading and messages


def _where(loc: tuple[int | str, ...]) -> str:
    """("interactions", "ketoconazole", "source") -> "interactions.ketoconazole.source"; list items as [i]."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a dict key that failed: the key is the part before
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "knowledge"


_PLAIN = {
    "float_type": "expected a number",
    "string_type": "expected a non-empty string",
    "string_pattern_mismatch": "expected a non-empty string",
    "bool_type": "expected true or false",
    "too_short": "expected a non-empty list",
    "tuple_type": "expected a list",
    "frozen_set_type": "expected a list",
}


def _sentence(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "literal_error":
        return f"{error['input']!r} is not one of {(error.get('ctx') or {}).get('expected', '')}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected an object, got {type(error['input']).__name__}"
    return _PLAIN.get(kind, error["msg"])


def _messages(error: ValidationError) -> list[str]:
    """One sentence per entry, naming it; unknown and missing fields of one object are listed together."""
    fields: dict[tuple[str, str], list[str]] = {}
    lines: list[str] = []
    for item in error.errors():
        kind, loc = item["type"], item["loc"]
        if kind in ("extra_forbidden", "missing"):
            group = (_where(loc[:-1]), "unknown" if kind == "extra_forbidden" else "missing")
            if group not in fields:
                fields[group] = []
                lines.append(f"{group[0]}: {group[1]} field(s) ")  # names appended below
            fields[group].append(repr(loc[-1]))
            continue
        lines.append(f"{_where(loc)}: {_sentence(item)}")
    for (where, what), names in fields.items():
        head = f"{where}: {what} field(s) "
        lines[lines.index(head)] = head + ", ".join(names)
    return lines


def parse_knowledge(data: Any, rule_codes: Collection[str]) -> Knowledge:
    """Validate the JSON document and build :class:`Knowledge` (raises KnowledgeError).

    ``rule_codes`` are the cards the service can give; the file must describe each, and no other.
    """
    sources = data.get("sources") if isinstance(data, dict) else None
    context = {"sources": list(sources) if isinstance(sources, dict) else None, "rule_codes": tuple(rule_codes)}
    try:
        return Knowledge.model_validate(data, context=context)
    except ValidationError as error:
        raise KnowledgeError("; ".join(_messages(error))) from None


def load_knowledge(path: str | Path | None = None, *, rule_codes: Collection[str] | None = None) -> Knowledge:
    """Read and validate the knowledge file (the packaged one when ``path`` is None).

    ``rule_codes`` defaults to the rule registry's (cds_services.rules.RULE_CODES).
    """
    if rule_codes is None:
        # The registry's rules read this module's types, so it is imported when a file is loaded.
        from cds_services.rules import RULE_CODES  # noqa: PLC0415 (the registry imports this module)

        rule_codes = RULE_CODES
    file = Path(path) if path else DEFAULT_PATH
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KnowledgeError(f"{file}: cannot read knowledge file: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise KnowledgeError(f"{file}: not valid JSON: {exc}") from exc
    try:
        return parse_knowledge(data, rule_codes)
    except KnowledgeError as exc:
        raise KnowledgeError(f"{file.name}: {exc}") from None
