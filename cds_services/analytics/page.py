"""The analytics report as one self-contained HTML page with server-rendered SVG charts.

Hospital networks often block CDNs and a committee may read the page from a
saved file, so the page has no JavaScript and loads nothing: the charts are
inline SVG drawn here, the style is inline CSS. It is written for a
pharmacist, not a developer: rule names as the cards show them, plain words
for each number, and the definitions at the bottom.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from html import escape
from typing import Any

# Colours chosen to stay apart for the common colour-vision deficiencies (blue/orange), with grey for silent.
FIRED, OVERRIDDEN, SILENT, THRESHOLD, GRID, INK = "#2b6cb0", "#dd6b20", "#a0aec0", "#c53030", "#e2e8f0", "#1a202c"
WIDTH = 780
LABEL_WIDTH = 320
NO_REASON = "No reason given"

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1a202c;margin:24px auto;
max-width:1000px;padding:0 16px;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:4px}h2{font-size:1.2rem;margin-top:32px;border-bottom:1px solid #e2e8f0}
.period{color:#4a5568;margin-top:0}
.figures{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.figure{border:1px solid #e2e8f0;border-radius:6px;padding:10px 14px;min-width:140px}
.figure b{display:block;font-size:1.5rem}.figure span{color:#4a5568;font-size:.9rem}
.flag{background:#fff5f5;border-left:4px solid #c53030;padding:8px 12px;margin:8px 0}
.ok{background:#f0fff4;border-left:4px solid #2f855a;padding:8px 12px}
.silent{background:#f7fafc;border-left:4px solid #a0aec0;padding:8px 12px}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{border-bottom:1px solid #e2e8f0;padding:6px 8px;text-align:right;vertical-align:top}
th{background:#f7fafc}td.name,th.name{text-align:left}td.name small{color:#718096}
tr.flagged td{background:#fff5f5}
svg.chart{display:block;max-width:100%;height:auto;margin:8px 0}
dt{font-weight:600}dd{margin:0 0 8px 0}
"""


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.0f}%"


def _short(text: str, limit: int = 42) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _day(value: str) -> str:
    """'2026-11-16' -> '16 Nov'."""
    moment = date.fromisoformat(value)
    return f"{moment.day} {moment.strftime('%b')}"


def _reason_name(reason: Mapping[str, Any]) -> str:
    return NO_REASON if reason.get("code") is None else str(reason.get("display") or reason["code"])


def _axis(value: float) -> tuple[int, int]:
    """(end, step) of a count axis: whole-number steps of 1, 2 or 5 times a power of ten, at most 5 of them."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if value <= 5 * step * factor:
                size = step * factor
                return max(size, -(-int(value) // size) * size), size
        step *= 10


def _svg(chart_id: str, title: str, height: int, body: Iterable[str]) -> str:
    return (
        f'<svg class="chart" id="{chart_id}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="{chart_id}-title" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'font-family="system-ui, Arial, sans-serif" font-size="13">'
        f'<title id="{chart_id}-title">{escape(title)}</title>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", fill: str = INK, size: int | None = None,
          title: str | None = None) -> str:
    size_attr = f' font-size="{size}"' if size else ""
    tip = f"<title>{escape(title)}</title>" if title else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{size_attr}>'
            f"{tip}{escape(text)}</text>")


def _legend(items: list[tuple[str, str]], y: float) -> list[str]:
    out: list[str] = []
    x = float(LABEL_WIDTH)
    for colour, label in items:
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(_text(x + 17, y, label))
        x += 30 + 7.5 * len(label)
    return out


def _empty(chart_id: str, title: str, message: str) -> str:
    return _svg(chart_id, title, 60, [_text(WIDTH / 2, 35, message, anchor="middle", fill="#718096")])


def bars_by_rule(rules: list[Mapping[str, Any]]) -> str:
    """Per rule: cards shown, of which overridden, and (silent mode) cards that would have been shown."""
    title = "Alerts shown and overridden, by rule"
    if not rules:
        return _empty("chart-rules", title, "No alerts in this period.")
    series = [("fired", FIRED, "shown"), ("overridden", OVERRIDDEN, "overridden")]
    if any(r["silent"] for r in rules):
        series.append(("silent", SILENT, "would have been shown (silent mode)"))
    bar, gap, top = 13, 12, 34
    row = len(series) * bar + gap
    height = top + row * len(rules) + 28
    scale_max, tick_step = _axis(max(max(r[key] for key, _, _ in series) for r in rules))
    plot = WIDTH - LABEL_WIDTH - 60
    body = _legend([(colour, label) for _, colour, label in series], 18)
    for tick in range(0, scale_max + 1, tick_step):
        x = LABEL_WIDTH + plot * tick / scale_max
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 24}" stroke="{GRID}"/>')
        body.append(_text(x, height - 8, _n(tick), anchor="middle", fill="#4a5568", size=11))
    for i, rule in enumerate(rules):
        y0 = top + i * row
        name = str(rule["display"])
        body.append(_text(LABEL_WIDTH - 8, y0 + row / 2, _short(name), anchor="end", title=f"{name} ({rule['code']})"))
        for j, (key, colour, label) in enumerate(series):
            value = rule[key]
            y = y0 + j * bar
            width = plot * value / scale_max
            dash = ' stroke="#718096" stroke-dasharray="3 2"' if key == "silent" else ""
            body.append(
                f'<rect class="bar bar-{key}" x="{LABEL_WIDTH}" y="{y:.1f}" width="{max(width, 0.0):.1f}" '
                f'height="{bar - 2}" fill="{colour}"{dash}>'
                f"<title>{escape(name)}: {_n(value)} {escape(label)}</title></rect>"
            )
            if value or key != "silent":  # a silent bar only where the rule is silent
                body.append(_text(LABEL_WIDTH + width + 4, y + bar - 3, _n(value), size=11, fill="#2d3748"))
    return _svg("chart-rules", title, height, body)


def rate_by_week(weeks: list[Mapping[str, Any]]) -> str:
    """Override rate per week, all rules together, against the 90% alert-fatigue line."""
    title = "Override rate by week (all rules)"
    if not weeks:
        return _empty("chart-weeks", title, "No weeks in this period.")
    left, right, top, bottom, height = 56, 24, 16, 44, 260
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    body = []
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y + 4, f"{pct}%", anchor="end", fill="#4a5568", size=11))
    y90 = top + plot_h * 0.1
    body.append(f'<line x1="{left}" y1="{y90:.1f}" x2="{WIDTH - right}" y2="{y90:.1f}" stroke="{THRESHOLD}" '
                'stroke-dasharray="6 4"/>')
    body.append(_text(left + 4, y90 - 5, "90%: alert-fatigue line", fill=THRESHOLD, size=11))
    step = plot_w / max(len(weeks) - 1, 1)
    every = max(1, -(-len(weeks) // 12))  # at most about 12 week labels
    points: list[list[tuple[float, float]]] = [[]]
    for i, week in enumerate(weeks):
        x = left + (step * i if len(weeks) > 1 else plot_w / 2)
        if i % every == 0 or i == len(weeks) - 1:
            body.append(_text(x, height - bottom + 18, _day(week["start"]), anchor="middle", fill="#4a5568", size=11))
        rate = week["override_rate"]
        if rate is None:
            points.append([])  # no answered card that week: a gap, not a zero
            continue
        y = top + plot_h * (1 - rate)
        points[-1].append((x, y))
        answered = week["accepted"] + week["overridden"]
        body.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{OVERRIDDEN}"><title>Week of '
            f"{_day(week['start'])}: {_n(week['overridden'])} of {_n(answered)} answered alerts overridden "
            f"({_pct(rate)})</title></circle>"
        )
    for run in points:
        if len(run) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            body.insert(0, f'<polyline class="rate-line" points="{path}" fill="none" stroke="{OVERRIDDEN}" '
                           'stroke-width="2"/>')
    body.append(_text(left + plot_w / 2, height - 6, "week starting (Monday, UTC)", anchor="middle",
                      fill="#4a5568", size=11))
    if not any(run for run in points):
        body.append(_text(left + plot_w / 2, top + plot_h / 2, "No alert was accepted or overridden in this period.",
                          anchor="middle", fill="#718096"))
    return _svg("chart-weeks", title, height, body)


def reason_bars(reasons: list[Mapping[str, Any]]) -> str:
    """Overridden alerts by the reason the clinician chose, and how many added a comment."""
    title = "Why clinicians overrode (all rules)"
    if not reasons:
        return _empty("chart-reasons", title, "No alert was overridden in this period.")
    bar, top = 22, 28
    height = top + bar * len(reasons) + 10
    scale_max, _ = _axis(max(r["count"] for r in reasons))
    plot = WIDTH - LABEL_WIDTH - 160
    body = _legend([(OVERRIDDEN, "overridden alerts")], 16)
    for i, reason in enumerate(reasons):
        y = top + i * bar
        name = _reason_name(reason)
        width = plot * reason["count"] / scale_max
        body.append(_text(LABEL_WIDTH - 8, y + 13, _short(name), anchor="end", title=name))
        body.append(
            f'<rect class="bar bar-reason" x="{LABEL_WIDTH}" y="{y:.1f}" width="{width:.1f}" height="{bar - 6}" '
            f'fill="{OVERRIDDEN}"><title>{escape(name)}: {_n(reason["count"])}</title></rect>'
        )
        body.append(
            _text(
                LABEL_WIDTH + width + 5,
                y + 13,
                f"{_n(reason['count'])} ({_n(reason['with_comment'])} with a comment)",
                size=11,
            )
        )
    return _svg("chart-reasons", title, height, body)


def _reasons_cell(reasons: list[Mapping[str, Any]]) -> str:
    if not reasons:
        return "—"
    return "<br>".join(f"{escape(_reason_name(r))}: {_n(r['count'])}" for r in reasons)


def _rules_table(rules: list[Mapping[str, Any]]) -> str:
    head = (
        '<table id="rules-table"><thead><tr><th class="name">Rule</th><th>Level</th><th>Shown</th>'
        "<th>Would have been shown (silent)</th><th>Accepted</th><th>Overridden</th><th>No response</th>"
        '<th>Override rate</th><th class="name">Top override reasons</th><th>Flag</th></tr></thead><tbody>'
    )
    rows = []
    for r in rules:
        levels = ", ".join(f"{escape(k)} {_n(v)}" for k, v in r["indicators"].items()) or "—"
        rows.append(
            f'<tr class="{"flagged" if r["flagged"] else ""}" data-code="{escape(r["code"])}">'
            f'<td class="name">{escape(r["display"])}<br><small>{escape(r["code"])}</small></td>'
            f"<td>{levels}</td><td>{_n(r['fired'])}</td><td>{_n(r['silent'])}</td><td>{_n(r['accepted'])}</td>"
            f"<td>{_n(r['overridden'])}</td><td>{_n(r['no_feedback'])}</td><td>{_pct(r['override_rate'])}</td>"
            f'<td class="name">{_reasons_cell(r["top_reasons"])}</td>'
            f"<td>{'alert fatigue?' if r['flagged'] else ''}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td class="name" colspan="10">No alerts in this period.</td></tr>')
    return head + "".join(rows) + "</tbody></table>"


def _group_table(table_id: str, label: str, key: str, groups: list[Mapping[str, Any]]) -> str:
    rows = (
        "".join(
            f'<tr><td class="name">{escape(str(g[key]))}</td><td>{_n(g["fired"])}</td><td>{_n(g["silent"])}</td>'
            f"<td>{_n(g['accepted'])}</td><td>{_n(g['overridden'])}</td><td>{_n(g['no_feedback'])}</td>"
            f"<td>{_pct(g['override_rate'])}</td></tr>"
            for g in groups
        )
        or '<tr><td class="name" colspan="7">No alerts in this period.</td></tr>'
    )
    return (
        f'<table id="{table_id}"><thead><tr><th class="name">{escape(label)}</th><th>Shown</th><th>Silent</th>'
        "<th>Accepted</th><th>Overridden</th><th>No response</th><th>Override rate</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _flags(report: Mapping[str, Any]) -> str:
    rate = report["thresholds"]["flag_override_rate_above"]
    minimum = report["thresholds"]["flag_min_answered_cards"]
    flagged = [r for r in report["rules"] if r["flagged"]]
    if not flagged:
        return (f'<p class="ok">None. No rule was overridden more than {rate:.0%} of the time over at least '
                f"{minimum} answered alerts.</p>")
    out = []
    for r in flagged:
        answered = r["accepted"] + r["overridden"]
        reasons = "; ".join(f"{escape(_reason_name(x))} ({_n(x['count'])})" for x in r["top_reasons"]) or "none given"
        out.append(
            f'<div class="flag" data-code="{escape(r["code"])}"><b>{escape(r["display"])}</b> '
            f"<small>({escape(r['code'])})</small>: overridden {_n(r['overridden'])} of {_n(answered)} times "
            f"({_pct(r['override_rate'])}). Top reasons: {reasons}.</div>"
        )
    return (f"<p>Rules overridden more than {rate:.0%} of the time over at least {minimum} answered alerts: "
            "candidates for review (rewording, a narrower trigger, a lower level, or silent mode).</p>" + "".join(out))


def _silent_note(report: Mapping[str, Any]) -> str:
    rules = report["silent_rules"]
    if not rules:
        return ""
    which = "every rule" if "*" in rules else ", ".join(escape(r) for r in rules)
    return (f'<p class="silent" id="silent-mode"><b>Silent mode is on</b> for {which}. These rules are checked as '
            "usual and counted here as <i>would have been shown</i>, but clinicians do not see their alerts.</p>")


def _when(value: str) -> str:
    moment = datetime.fromisoformat(value)
    return f"{moment.day} {moment.strftime('%b %Y, %H:%M')} UTC"


def render_page(report: Mapping[str, Any], title: str = "Ixabepilone order checks") -> str:
    """The whole page: figures, flags, three charts, the table, definitions."""
    totals = report["totals"]
    answered = totals["accepted"] + totals["overridden"]
    figures = [
        (_n(totals["fired"]), "alerts shown"),
        (_n(answered), "answered (accepted or overridden)"),
        (_pct(totals["override_rate"]), "override rate"),
        (_n(totals["no_feedback"]), "no response"),
    ]
    if report["silent_rules"] or totals["silent"]:
        figures.append((_n(totals["silent"]), "would have been shown (silent mode)"))
    rate = report["thresholds"]["flag_override_rate_above"]
    minimum = report["thresholds"]["flag_min_answered_cards"]
    return "".join([
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no /favicon.ico request: the page loads nothing
        f"<title>{escape(title)}: alerts and overrides</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}: alerts and what clinicians did with them</h1>",
        f'<p class="period">Last {_n(report["since_days"])} days, '
        f'{_when(report["from"])} to {_when(report["to"])}.</p>',
        _silent_note(report),
        '<div class="figures">',
        "".join(f'<div class="figure"><b>{value}</b><span>{escape(label)}</span></div>' for value, label in figures),
        "</div>",
        '<h2 id="flags">Possible alert fatigue</h2>', _flags(report),
        "<h2>Alerts shown and overridden, by rule</h2>", bars_by_rule(report["rules"]),
        "<h2>Override rate by week</h2>", rate_by_week(report["weeks"]),
        "<h2>Why clinicians overrode</h2>", reason_bars(totals["reasons"]),
        "<h2>All rules</h2>", _rules_table(report["rules"]),
        "<h2>By alert level</h2>", _group_table("level-table", "Level", "indicator", report["by_indicator"]),
        "<h2>By service</h2>", _group_table("service-table", "Service", "service_id", report["by_service"]),
        "<h2>How to read this page</h2><dl>",
        "<dt>Shown</dt><dd>Alerts (CDS cards) the service sent to the EHR for an ixabepilone order.</dd>",
        "<dt>Would have been shown (silent)</dt><dd>Alerts of rules in silent mode: computed and counted, "
        "not sent. Use it to see a rule's alert burden before switching it on.</dd>",
        "<dt>Accepted / Overridden</dt><dd>Alerts the clinician acted on (accepted a suggestion) or dismissed, "
        "as the EHR reported back. An alert counts once, by its latest report.</dd>",
        "<dt>No response</dt><dd>Shown alerts the EHR reported nothing about: ignored, or the EHR does not "
        "report this interaction.</dd>",
        "<dt>Override rate</dt><dd>Overridden ÷ (accepted + overridden). Alerts with no response are left out.</dd>",
        f"<dt>Possible alert fatigue</dt><dd>Override rate above {rate:.0%} over at least {minimum} answered "
        "alerts.</dd>",
        "<dt>Reasons</dt><dd>The coded reason chosen when overriding, and how many overrides carried a free-text "
        "comment (the comments themselves are not shown here).</dd></dl>",
        "</body></html>",
    ])
