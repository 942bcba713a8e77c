"""Report sections of numbers: classification and retrieval metrics, and the run summaries."""
from __future__ import annotations

import json
from html import escape as esc
from typing import Any

from udfs.report_plots import shade
from udfs.report_sections import Section

Row = dict[str, Any]  # a row of the metrics or runs table, as Row.asDict() gives it
CLASS_METRICS = ("precision", "recall", "f1")


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(head: list[str], body: list[str], css: str = "") -> str:
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<table class="{css}"><thead><tr>{cells}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def is_retrieval(metric: str) -> bool:
    """Retrieval metrics are named `<name>@<k>`; classification ones are not."""
    return "@" in metric


def classification_section(rows: list[Row], confusion: list[Row], classes_total: int) -> Section:
    """Headline numbers, a per-class table and the confusion matrix (gold rows × predicted columns)."""
    overall = {r["metric"]: r for r in rows if r["class"] is None}
    tiles = "".join(f'<div class="tile"><b>{_number(r["value"])}</b>{esc(name.replace("_", " "))}'
                    f'<small>{r["queries"]} items</small></div>' for name, r in sorted(overall.items()))
    per_class: dict[str, dict[str, Row]] = {}
    for r in rows:
        if r["class"] is not None and r["metric"] in CLASS_METRICS:
            per_class.setdefault(r["class"], {})[r["metric"]] = r
    body = []
    for label, found in sorted(per_class.items()):
        support = found["recall"]["queries"] if "recall" in found else None
        values = "".join(f'<td style="background:{shade(found[m]["value"], 1.0)}">'
                         f'{_number(found[m]["value"])}</td>' if m in found else "<td>–</td>"
                         for m in CLASS_METRICS)
        body.append(f"<tr><th>{esc(label)}</th><td>{support if support is not None else '–'}</td>{values}</tr>")
    per_class_table = _table(["class", "items", *CLASS_METRICS], body, "metrics")
    return Section("classification", "Classification",
                   f'<div class="tiles">{tiles}</div><h3>Per class</h3>{per_class_table}'
                   + confusion_matrix(confusion, classes_total))


def confusion_matrix(confusion: list[Row], classes_total: int) -> str:
    gold = sorted({r["class"] for r in confusion})
    predicted = gold + sorted({r["predicted"] for r in confusion} - set(gold))
    counts = {(r["class"], r["predicted"]): int(r["value"]) for r in confusion}
    body = []
    for g in gold:
        top = max((counts.get((g, p), 0) for p in predicted), default=0)
        cells = "".join(f'<td class="{"diag" if g == p else ""}" style="background:'
                        f'{shade(counts.get((g, p), 0), top)}">{counts.get((g, p), 0) or ""}</td>'
                        for p in predicted)
        body.append(f"<tr><th>{esc(g)}</th>{cells}</tr>")
    shown = f" ({len(gold)} of {classes_total} classes, the largest)" if classes_total > len(gold) else ""
    return (f'<h3>Confusion matrix{shown}</h3><p class="note">Rows: gold label; columns: predicted.</p>'
            + _table(["gold \\ predicted", *predicted], body, "confusion"))


def retrieval_section(rows: list[Row]) -> Section:
    """The precision@k family, overall and per class (a row each), as fractions."""
    metrics = sorted({r["metric"] for r in rows})
    by_class: dict[str | None, dict[str, Row]] = {}
    for r in rows:
        by_class.setdefault(r["class"], {})[r["metric"]] = r
    order = sorted(by_class, key=lambda c: (c is not None, c or ""))
    body = []
    for label in order:
        found = by_class[label]
        queries = max(r["queries"] or 0 for r in found.values())
        values = "".join(f'<td style="background:{shade(found[m]["value"], 1.0)}">{_number(found[m]["value"])}'
                         f"</td>" if m in found else "<td>–</td>" for m in metrics)
        name = "<b>all classes</b>" if label is None else esc(label)
        body.append(f"<tr><th>{name}</th><td>{queries}</td>{values}</tr>")
    note = ('<p class="note">Relevant = the other items of the query\'s class; rank-weighted precision '
            "weighs a hit at rank i (0-based) by (k − i)/k.</p>")
    return Section("retrieval", "Retrieval", note + _table(["class", "queries", *metrics], body, "metrics"))


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {"(unreadable)": text}


def runs_section(rows: list[Row]) -> Section:
    """One row a run, newest first: rows in / ok / failed by status, seconds per stage, outputs."""
    body = []
    for r in rows:
        statuses, stages, outputs = _json(r.get("statuses")), _json(r.get("stages")), _json(r.get("outputs"))
        failed = {k: v for k, v in statuses.items() if k != "ok"} if isinstance(statuses, dict) else {}
        failed_text = "<br>".join(f"{esc(str(k))} {esc(str(v))}" for k, v in sorted(failed.items())) or "0"
        stages = stages if isinstance(stages, dict) else {}
        top = max([v for v in stages.values() if isinstance(v, (int, float))], default=0.0)
        bars = "".join(f'<div class="stage"><span class="track"><span class="bar" style="width:{_width(v, top)}%">'
                       f"</span></span>"
                       f"{esc(str(k))} {esc(_seconds(v))}</div>" for k, v in stages.items())
        outs = "<br>".join(esc(str(o)) for o in outputs) if isinstance(outputs, list) else ""
        body.append(f"<tr><td>{esc(str(r.get('started_at', ''))[:19].replace('T', ' '))}</td>"
                    f"<th>{esc(str(r.get('job', '')))}</th><td>{esc(str(r.get('run_id', '')))}</td>"
                    f"<td>{_number(r.get('seconds'), 1)}</td><td>{r.get('rows_in', '')}</td>"
                    f"<td>{r.get('rows_ok', '')}</td><td class=\"failed\">{failed_text}</td>"
                    f"<td>{bars}</td><td class=\"outs\">{outs}</td></tr>")
    head = ["started (UTC)", "job", "run", "seconds", "rows in", "ok", "failed by status", "seconds per stage",
            "outputs"]
    return Section("runs", "Run summaries", f'<p class="note">The last {len(rows)} runs, newest first.</p>'
                   + _table(head, body, "runs"))


def _width(value: Any, top: float) -> int:
    return int(100 * value / top) if isinstance(value, (int, float)) and top > 0 else 0


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else str(value)
