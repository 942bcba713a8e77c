"""The label playground's HTTP API: score a text against labels, and label the whole table in the background."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from jobs.app.apply import Busy
from jobs.app.corpus import NotFound
from jobs.app.playground import METHODS, ZmapNotReady
from jobs.app.state import AppState

NO_PLAYGROUND = ("no label playground: start the server with --label-set, --labels-head or --label-embeddings "
                 "(or on a text index)")


class LabelQuery(BaseModel):
    text: str
    labels: list[str | dict] | None = None  # names, or {name, description, keywords}; None = the label set's
    method: str = "zero-shot"


class ApplyQuery(BaseModel):
    labels: list[str | dict] | None = None
    method: str = "zero-shot"


def describe(state: AppState) -> dict | None:
    """The playground's starting labels, methods and whether the table can be labelled (for the page)."""
    pg = state.playground
    if pg is None:
        return None
    return {"encoder": pg.encoder.label, "methods": [m for m in METHODS if m != "head" or pg.head is not None],
            "labels": pg.starting_labels(), "templates": list(pg.templates),
            "head": {"method": pg.head.method, "labels": pg.head.labels} if pg.head is not None else None,
            "apply": state.runner.opts.embeddings if state.runner is not None else None,
            "map": state.label_map is not None}


def router(state: AppState) -> APIRouter:
    api = APIRouter()

    def playground():
        if state.playground is None:
            raise NotFound(NO_PLAYGROUND)
        return state.playground

    @api.post("/api/labels")
    def labels(query: LabelQuery):
        """{text, labels, method} → {scores: [{label, score}] best first, timings_ms, map: the text's place}."""
        try:
            result = playground().score(query.text, query.labels, query.method)
        except ZmapNotReady as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        vector = result.pop("vector")
        result["map"] = state.label_map.place(vector) if state.label_map is not None else None
        return result

    @api.post("/api/labels/apply", status_code=202)
    def apply(query: ApplyQuery) -> dict:
        """Starts assign-labels over the label table with these labels and method; poll /api/tasks/{task}."""
        pg = playground()
        if state.runner is None:
            raise NotFound("no table to label: start the server with --label-embeddings")
        if query.method not in METHODS or (query.method == "head" and pg.head is None):
            raise HTTPException(422, f"method: {query.method!r}; accepted: {', '.join(describe(state)['methods'])}")
        try:
            label_set = None if query.method == "head" else pg.labels_from(query.labels)
            return state.runner.start(query.method, label_set, state.options.labels_head).view()
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except Busy as exc:
            raise HTTPException(409, str(exc)) from None

    def task(task_id: str):
        if state.runner is None or task_id not in state.runner.tasks:
            raise NotFound(f"no labelling run {task_id!r}")
        return state.runner.tasks[task_id]

    @api.get("/api/tasks/{task_id}")
    def task_status(task_id: str) -> dict:
        return task(task_id).view()

    @api.get("/api/tasks/{task_id}/rows")
    def task_rows(task_id: str, limit: int = Query(20, ge=1, le=500)) -> dict:
        """The first rows of a finished run's labels table."""
        if task(task_id).state != "done":
            raise HTTPException(409, f"run {task_id} is {task(task_id).state}; its table is not published")
        return {"output": task(task_id).output, "rows": state.runner.rows(task_id, limit)}

    return api
