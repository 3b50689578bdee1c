"""What the CDS committee asks of the cards we served: pure aggregation, rows in, report out.

The questions (issue 14): which rules fire, how often clinicians override them
and why, which suggestions they accept, which rules they have learned to
ignore. Override rates of 49-96% are common for drug alerts (van der Sijs et
al., JAMIA 2006;13:138-147), which is why a committee looks rule by rule.

Definitions, stated once here and on the page:

- **fired**: cards returned to the EHR. **silent** ("would have fired"): cards
  computed for a rule in silent mode (``CDS_SILENT_RULES``) and held back.
- A card's outcome is its latest feedback (by ``outcomeTimestamp``, then by
  arrival): the spec lets a card ignored at first be acted on later (CDS
  Hooks 2.0 §Feedback). **accepted** and **overridden** count distinct cards;
  **no_feedback** is the rest of the fired cards: ignored, or the EHR sends no
  feedback.
- **override_rate** = overridden / (accepted + overridden): the share of the
  cards clinicians answered that they overrode. Cards without feedback are
  left out of it, since an EHR that reports only some interactions would
  otherwise look like total compliance or total override; ``no_feedback``
  is reported beside it. None when no card was answered.
- **flagged** (alert-fatigue candidate): override rate above 90% over at least
  30 answered cards (issue 14's threshold).
- Reasons count overridden cards by coded reason (``null`` when none was
  given) and how many of those carried a user comment. The comment's text is
  never read into the report: it is free text.
- **suggestions_accepted** counts accepted suggestions whose uuid is one the
  card was served with; ``suggestions_unknown`` counts the others.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

FATIGUE_OVERRIDE_RATE = 0.90  # flag above this rate (issue 14)
FATIGUE_MIN_CARDS = 30  # ... over at least this many answered cards (issue 14)
TOP_REASONS = 3


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _timestamp(value: Any) -> datetime:
    """outcomeTimestamp as stored (validated ISO 8601 with a zone); unreadable ones sort first."""
    try:
        return as_utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Outcome:
    """A card's latest feedback, reduced to what the report counts."""

    outcome: str  # "accepted" | "overridden"
    reason: tuple[str | None, str | None] = (None, None)  # (system, code) of the override reason
    commented: bool = False
    accepted_suggestions: tuple[str, ...] = ()


def _outcome(item: Mapping[str, Any]) -> Outcome:
    if item["outcome"] != "overridden":
        accepted = item.get("accepted_suggestions") or []
        ids = tuple(s["id"] for s in accepted if isinstance(s, Mapping) and isinstance(s.get("id"), str))
        return Outcome("accepted", accepted_suggestions=ids)
    reason = reason if isinstance(reason := item.get("override_reason"), Mapping) else {}
    coding = coding if isinstance(coding := reason.get("reason"), Mapping) else {}
    comment = reason.get("userComment")
    return Outcome(
        "overridden",
        reason=(coding.get("system"), coding.get("code")),
        commented=isinstance(comment, str) and bool(comment.strip()),
    )


def latest_outcomes(feedback: Iterable[Mapping[str, Any]]) -> dict[str, Outcome]:
    """card uuid -> the outcome of its latest feedback item."""
    ordered = sorted(feedback, key=lambda item: (_timestamp(item.get("outcome_timestamp")), item.get("id") or 0))
    return {item["card_uuid"]: _outcome(item) for item in ordered}


@dataclass
class Tally:
    """Counts for one group of cards (a rule, an indicator, a service, a week)."""

    fired: int = 0
    silent: int = 0
    accepted: int = 0
    overridden: int = 0
    # (system, code) -> overridden cards, and of which with a user comment
    reasons: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    commented: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    suggestions_accepted: int = 0
    suggestions_unknown: int = 0
    indicators: Counter[str] = field(default_factory=Counter)

    def add(self, card: Mapping[str, Any], outcome: Outcome | None) -> None:
        if card["silent"]:
            self.silent += 1  # never shown, so any feedback on it is not the clinicians' answer
            return
        self.fired += 1
        self.indicators[card["indicator"]] += 1
        if outcome is None:
            return
        if outcome.outcome == "accepted":
            self.accepted += 1
            offered = set(card.get("suggestion_uuids") or ())
            known = sum(1 for s in outcome.accepted_suggestions if s in offered)
            self.suggestions_accepted += known
            self.suggestions_unknown += len(outcome.accepted_suggestions) - known
        else:
            self.overridden += 1
            self.reasons[outcome.reason] += 1
            self.commented[outcome.reason] += outcome.commented

    @property
    def answered(self) -> int:
        return self.accepted + self.overridden

    @property
    def override_rate(self) -> float | None:
        return round(self.overridden / self.answered, 4) if self.answered else None

    @property
    def flagged(self) -> bool:
        rate = self.override_rate
        return rate is not None and rate > FATIGUE_OVERRIDE_RATE and self.answered >= FATIGUE_MIN_CARDS

    def counts(self, reason_display: Callable[[str | None], str]) -> dict[str, Any]:
        reasons = [
            {
                "code": code,
                "system": system,
                "display": reason_display(code),
                "count": count,
                "with_comment": self.commented[(system, code)],
            }
            for (system, code), count in sorted(
                self.reasons.items(), key=lambda kv: (-kv[1], kv[0][1] is None, str(kv[0][1]))
            )
        ]
        return {
            "fired": self.fired,
            "silent": self.silent,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "no_feedback": self.fired - self.answered,
            "override_rate": self.override_rate,
            "reasons": reasons,
            "suggestions_accepted": self.suggestions_accepted,
            "suggestions_unknown": self.suggestions_unknown,
            "indicators": dict(sorted(self.indicators.items())),
        }


def week_start(moment: datetime) -> date:
    """The Monday (UTC) of the ISO week ``moment`` falls in."""
    day = as_utc(moment).date()
    return day - timedelta(days=day.weekday())


def build_report(
    served: Iterable[Mapping[str, Any]],
    feedback: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    since_days: int,
    rule_display: Callable[[str], str],
    reason_display: Callable[[str | None], str],
    silent_rules: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The report behind ``/analytics.json``, the page and the CLI (one source for all three)."""
    now = as_utc(now)
    start = now - timedelta(days=since_days)
    outcomes = latest_outcomes(feedback)
    rules: dict[str, Tally] = {}
    indicators: dict[str, Tally] = {}
    services: dict[str, Tally] = {}
    first_week = week_start(start)
    weeks: dict[date, Tally] = {}
    monday = first_week
    while monday <= week_start(now):
        weeks[monday] = Tally()
        monday += timedelta(days=7)
    total = Tally()
    for card in served:
        served_at = as_utc(card["served_at"])
        if served_at < start:
            continue
        outcome = outcomes.get(card["card_uuid"])
        for tally in (
            rules.setdefault(card["rule_code"], Tally()),
            indicators.setdefault(card["indicator"], Tally()),
            services.setdefault(card["service_id"], Tally()),
            weeks.setdefault(week_start(served_at), Tally()),
            total,
        ):
            tally.add(card, outcome)

    def row(key: str, name: str, tally: Tally) -> dict[str, Any]:
        return {key: name, **tally.counts(reason_display)}

    rule_rows = []
    for code, tally in sorted(rules.items(), key=lambda kv: (-kv[1].fired, -kv[1].silent, kv[0])):
        entry = {"code": code, "display": rule_display(code), **tally.counts(reason_display)}
        entry["flagged"] = tally.flagged
        entry["top_reasons"] = entry["reasons"][:TOP_REASONS]
        rule_rows.append(entry)
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "since_days": since_days,
        "from": start.isoformat(timespec="seconds"),
        "to": now.isoformat(timespec="seconds"),
        "silent_rules": list(silent_rules),
        "thresholds": {"flag_override_rate_above": FATIGUE_OVERRIDE_RATE, "flag_min_answered_cards": FATIGUE_MIN_CARDS},
        "totals": total.counts(reason_display),
        "rules": rule_rows,
        "flagged": [r["code"] for r in rule_rows if r["flagged"]],
        "by_indicator": [row("indicator", k, t) for k, t in sorted(indicators.items())],
        "by_service": [row("service_id", k, t) for k, t in sorted(services.items())],
        "weeks": [
            {"week": f"{m.isocalendar()[0]}-W{m.isocalendar()[1]:02d}", "start": m.isoformat(),
             **t.counts(reason_display)}
            for m, t in sorted(weeks.items())
        ],
    }
