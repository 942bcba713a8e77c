"""The HTTP API under the page (FastAPI): live search, the corpus by id, comparison, maps, thumbnails."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobs.app import labels_api
from jobs.app.corpus import NotFound
from jobs.app.state import AppState
from jobs.app.uploads import body_limit, http_status, sniff_image
from udfs.status import RowError

STATIC = Path(__file__).with_name("static")
MAX_K = 1000
# the page loads only its own files; thumbnails are same-origin; nothing from elsewhere
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'",
                "X-Content-Type-Options": "nosniff"}


def create_app(state: AppState) -> FastAPI:
    """The app over a loaded AppState; no docs pages (they would load scripts from a CDN)."""
    opts, corpus, engine = state.options, state.corpus, state.engine
    app = FastAPI(title="sparkamp serve", docs_url=None, redoc_url=None,
                  max_body_size=body_limit(opts.limits.max_bytes))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(labels_api.router(state))

    @app.exception_handler(RowError)
    async def row_error(_request: Request, exc: RowError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "status": exc.status}, status_code=http_status(exc))

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 413 and detail == "Content Too Large":  # Starlette's body limit, counting
            detail = (f"the request is over the limit of {opts.limits.max_bytes} bytes (max_upload_bytes); "
                      "send a smaller file")
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/healthz")
    def healthz() -> dict:
        meta = state.view.loaded.manifest
        return {"status": "ok", "model": meta.model, "kind": engine.kind, "ntotal": meta.ntotal,
                "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/api/info")
    def info() -> dict:
        """What the page needs to draw itself: the index, the tables given, the limits."""
        meta = state.view.loaded.manifest
        return {"kind": engine.kind, "model": meta.model, "ntotal": meta.ntotal, "index": opts.index,
                "factory": meta.factory, "k": opts.k, "items": corpus.total, "gold": bool(corpus.gold),
                "max_upload_bytes": opts.limits.max_bytes, "max_text_chars": opts.limits.max_text_chars,
                "tables": {name: getattr(corpus, name) is not None
                           for name in ("embeddings", "neighbours", "duplicates", "uniqueness")},
                "compare": state.comparison.names() if state.comparison else None,
                "labels": labels_api.describe(state)}

    @app.post("/api/search")
    async def search(request: Request) -> dict:
        """multipart `image` (a file) or form `text`, and `k` → the k nearest items with timings."""
        form = await request.form(max_files=1, max_fields=8, max_part_size=body_limit(opts.limits.max_bytes))
        try:
            k = _k(form.get("k"), opts.k)
            upload, text = form.get("image"), form.get("text")
            if upload is not None and not isinstance(upload, str):
                data = await upload.read()
                return await run_in_threadpool(_search_image, data, k)
            if isinstance(text, str) and text:
                return await run_in_threadpool(_search_text, text, k)
        finally:
            await form.close()
        raise HTTPException(400, "send an image (multipart file field `image`) or a text (form field `text`)")

    def _search_image(data: bytes, k: int) -> dict:
        kind = sniff_image(data, opts.limits.max_bytes)
        vector, embed_ms = engine.embed_image(data)
        return {"query": {"kind": "image", "format": kind}, **_answer(None, vector, k, embed_ms)}

    def _search_text(text: str, k: int) -> dict:
        vector, embed_ms = engine.embed_text(text)
        return {"query": {"kind": "text", "chars": len(text)}, **_answer(None, vector, k, embed_ms)}

    def _answer(own: str | None, vector, k: int, embed_ms: float) -> dict:
        found, search_ms = engine.search(vector, k, own)
        return {"neighbours": _with_hits(own, found), "timings_ms": {"embed": embed_ms, "search": search_ms},
                "map": state.index_map.place(vector)}

    def _with_hits(own: str | None, found: list[dict]) -> list[dict]:
        hits = corpus.hits(own, [n["id"] for n in found])
        return [{**n, "label": corpus.gold.get(n["id"]), "hit": hit} for n, hit in zip(found, hits)]

    @app.get("/api/items")
    def items(offset: int = Query(0, ge=0), limit: int = Query(48, ge=1, le=500)) -> dict:
        return {"total": corpus.total, "offset": offset, "items": corpus.page(offset, limit)}

    @app.get("/api/items/{item_id:path}/neighbours")
    def item_neighbours(item_id: str, k: int = Query(0, ge=0, le=MAX_K),
                        source: Literal["auto", "table", "index"] = "auto") -> dict:
        """The neighbours table's rows for the item (when given), else a live search by its vector."""
        k = k or opts.k
        stored = corpus.stored_neighbours(item_id) if source != "index" else None
        answer = {"id": item_id, "label": corpus.gold.get(item_id)}
        if stored:
            return {**answer, "source": "neighbours table", "neighbours": _with_hits(item_id, stored[:k]),
                    "timings_ms": {"embed": 0.0, "search": 0.0}, "map": None}
        if source == "table":
            raise NotFound(f"no rows for {item_id!r} in the neighbours table")
        vectors, found = state.view.vectors_of([item_id])
        if not found[0]:
            raise NotFound(f"no item {item_id!r} in the index")
        return {**answer, "source": "index", **_answer(item_id, vectors, k, 0.0)}

    @app.get("/api/items/{item_id:path}/compare")
    def item_compare(item_id: str, k: int = Query(0, ge=0, le=MAX_K)) -> dict:
        comparison = _comparison()
        return {"id": item_id, "label": corpus.gold.get(item_id), "k": k or opts.k,
                "indexes": comparison.query(item_id, k or opts.k)}

    @app.get("/api/compare")
    def compare(queries: int = Query(0, ge=0, le=100_000), k: int = Query(0, ge=0, le=MAX_K)) -> dict:
        return _comparison().overall(queries or opts.compare_queries, k or opts.k, opts.seed)

    def _comparison():
        if state.comparison is None:
            raise NotFound("no second index: start the server with --compare-index DIR")
        return state.comparison

    @app.get("/api/duplicates")
    def duplicates(offset: int = Query(0, ge=0), limit: int = Query(12, ge=1, le=200)) -> dict:
        total, groups = corpus.duplicate_groups(offset, limit)
        return {"total": total, "offset": offset, "groups": groups}

    @app.get("/api/unique")
    def unique(limit: int = Query(24, ge=1, le=500)) -> dict:
        return {"items": [{**row, "label": corpus.gold.get(row["id"])} for row in corpus.most_unique(limit)]}

    @app.get("/api/map/{which}")
    def atlas(which: Literal["index", "labels"]) -> dict:
        chosen = state.index_map if which == "index" else state.label_map
        if chosen is None:
            raise NotFound("no map of label texts: start the server with --label-embeddings")
        return chosen.payload()

    @app.get("/api/thumbnails/{item_id:path}")
    def thumbnail(item_id: str) -> Response:
        """The image of an id in the embeddings table, made from that row's `source` (never a request's path)."""
        try:
            data, mime = corpus.thumbnail(item_id, opts.thumb_size)
        except RowError as exc:
            raise NotFound(f"the file behind {item_id!r} cannot be read: {exc.message}") from None
        return Response(data, media_type=mime, headers={"Cache-Control": "max-age=3600",
                                                        "X-Content-Type-Options": "nosniff"})

    return app


def _k(value: object, default: int) -> int:
    if value in (None, ""):
        return default
    if not isinstance(value, str) or not value.isdigit() or not 1 <= int(value) <= MAX_K:
        raise HTTPException(422, f"k must be a whole number from 1 to {MAX_K}, got {value!r}")
    return int(value)
