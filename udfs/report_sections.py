"""Report sections of items: neighbour grids, unique items, duplicate groups, predictions, the map."""
from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape as esc

import numpy as np

from udfs import report_plots


@dataclass(frozen=True)
class Item:
    """What the page shows of one item; every field but `id` may be unknown."""

    id: str
    thumb: str | None = None      # a data URI
    image: bool = False           # the source is an image file: no thumb means it could not be read
    snippet: str | None = None    # the start of its text
    gold: str | None = None       # true label
    predicted: str | None = None  # rank-1 label of the labels table


@dataclass(frozen=True)
class Section:
    id: str     # the HTML id, also the nav anchor
    title: str  # plain text (escaped when rendered)
    body: str   # HTML


Neighbour = tuple[str, int, float]  # (neighbor_id, rank, score)


def card(item: Item, caption: str = "", verdict: str = "") -> str:
    """One item as a figure: thumbnail, placeholder box, or text snippet; `caption` is HTML."""
    if item.thumb:
        body = f'<img src="{esc(item.thumb)}" alt="{esc(item.id)}">'
    elif item.image:
        body = '<div class="ph" title="the image file could not be read">no image</div>'
    else:
        body = f'<p class="snip">{esc(item.snippet if item.snippet is not None else item.id)}</p>'
    return (f'<figure class="card {verdict}" title="{esc(item.id)}">{body}'
            f'<figcaption>{caption}<span class="id">{esc(item.id)}</span></figcaption></figure>')


def verdict(query: Item, other: Item) -> str:
    """`hit` / `miss` when both gold labels are known, else nothing."""
    if query.gold is None or other.gold is None:
        return ""
    return "hit" if query.gold == other.gold else "miss"


def _label_line(item: Item) -> str:
    parts = [f"gold <b>{esc(item.gold)}</b>" if item.gold is not None else "",
             f"predicted <b>{esc(item.predicted)}</b>" if item.predicted is not None else ""]
    return " · ".join(p for p in parts if p)


def neighbours_section(grids: list[tuple[str, list[Neighbour]]], items: dict[str, Item],
                       total: int) -> Section:
    rows, hits, misses = [], 0, 0
    for query_id, found in grids:
        query = items.get(query_id, Item(query_id))
        cells = []
        for neighbour_id, rank, score in found:
            other = items.get(neighbour_id, Item(neighbour_id))
            mark = verdict(query, other)
            hits, misses = hits + (mark == "hit"), misses + (mark == "miss")
            cells.append(card(other, f"#{rank} · {score:.3f}<br>", mark))
        rows.append(f'<div class="row"><div class="query">{card(query, _label_line(query) + "<br>")}</div>'
                    f'<div class="cells">{"".join(cells)}</div></div>')
    scored = f" Shown neighbours: <span class=\"hit-t\">{hits} hits</span>, " \
             f"<span class=\"miss-t\">{misses} misses</span> (same gold label as the query)." \
        if hits + misses else ""
    intro = f'<p class="note">{len(grids)} of {total} queries, a seeded sample.{scored}</p>'
    return Section("neighbours", "Queries and their neighbours", intro + "".join(rows))


def unique_section(rows: list[tuple[str, str | None, float | None, int]], items: dict[str, Item],
                   total: int) -> Section:
    cells = []
    for item_id, nearest_id, score, rank in rows:
        item = items.get(item_id, Item(item_id))
        similarity = "no other item" if score is None else f"nearest {score:.3f}"
        pair = card(item, f"#{rank} · {similarity}<br>")
        if nearest_id is not None:
            pair += card(items.get(nearest_id, Item(nearest_id)), "its nearest<br>", "small")
        cells.append(f'<div class="pair">{pair}</div>')
    intro = f'<p class="note">The {len(rows)} of {total} items least similar to any other item.</p>'
    return Section("unique", "Most unique items", intro + f'<div class="cells">{"".join(cells)}</div>')


def duplicates_section(groups: list[tuple[str, int, list[tuple[str, float]]]], items: dict[str, Item],
                       total_groups: int) -> Section:
    rows = []
    for group_id, size, members in groups:
        cells = [card(items.get(m, Item(m)), f"{'representative' if m == group_id else f'{s:.3f}'}<br>",
                      "rep" if m == group_id else "") for m, s in members]
        more = f'<p class="note">+{size - len(members)} more</p>' if size > len(members) else ""
        rows.append(f'<div class="row"><div class="gsize">{size}<br>items</div>'
                    f'<div class="cells">{"".join(cells)}{more}</div></div>')
    intro = f'<p class="note">The {len(groups)} largest of {total_groups} duplicate groups.</p>'
    return Section("duplicates", "Duplicate groups", intro + "".join(rows))


def predictions_section(rows: list[tuple[str, str | None, float | None]], items: dict[str, Item],
                        statuses: dict[str, int]) -> Section:
    cells, correct, known = [], 0, 0
    for item_id, label, score in rows:
        item = items.get(item_id, Item(item_id))
        mark = "" if item.gold is None or label is None else "hit" if label == item.gold else "miss"
        correct, known = correct + (mark == "hit"), known + bool(mark)
        text = "no label" if label is None else f"<b>{esc(label)}</b> {score:.3f}"
        gold = f"<br>gold {esc(item.gold)}" if item.gold is not None else ""
        cells.append(card(item, f"{text}{gold}<br>", mark))
    counts = ", ".join(f"{esc(s)} {n}" for s, n in sorted(statuses.items()))
    right = f" {correct} of {known} shown are right." if known else ""
    intro = f'<p class="note">Items by status: {counts}. A seeded sample of rank-1 labels.{right}</p>'
    return Section("predictions", "Predicted labels", intro + f'<div class="cells">{"".join(cells)}</div>')


def map_section(coords: np.ndarray, ids: list[str], items: dict[str, Item], method: str,
                statuses: dict[str, int]) -> Section:
    """The 2-D map, coloured by gold label (else predicted); a menu switches when both are known."""
    points = [items.get(i, Item(i)) for i in ids]
    modes = {name: [getattr(p, name) for p in points] for name in ("gold", "predicted")
             if any(getattr(p, name) is not None for p in points)}
    colours = {name: report_plots.palette(labels) for name, labels in modes.items()}
    first = next(iter(modes), "")
    fills = [report_plots.colour_of(label, colours[first]) for label in modes[first]] if first else \
        [report_plots.PALETTE[0]] * len(points)
    legends = "".join(
        f'<div class="legend" data-mode="{name}"{"" if name == first else " hidden"}>'
        + "".join(f'<span><i style="background:{c}"></i>{esc(label)}</span>' for label, c in cs.items())
        + "</div>" for name, cs in colours.items())
    menu = ('<label class="note">colour by <select id="map-colour">'
            + "".join(f'<option value="{n}">{n} label</option>' for n in modes) + "</select></label>"
            if len(modes) > 1 else "")
    data = {"points": [[p.id, p.gold, p.predicted, p.thumb, p.snippet] for p in points],
            "colours": {name: [report_plots.colour_of(label, colours[name]) for label in labels]
                        for name, labels in modes.items()}}
    payload = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    counts = ", ".join(f"{esc(s)} {n}" for s, n in sorted(statuses.items()))
    intro = (f'<p class="note">{len(points)} embeddings (a seeded sample), projected by {method.upper()}. '
             f'Rows by status: {counts}. Hover a point to see the item.</p>')
    return Section("map", "Map of the embedding space",
                   intro + menu + legends + report_plots.scatter_svg(coords, fills)
                   + f'<script type="application/json" id="map-data">{payload}</script>')
