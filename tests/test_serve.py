"""sparkamp serve: the API over a tiny real pipeline (Fashion-MNIST images, fortunes) built by the real jobs,
every bad input, 8 concurrent clients on a real uvicorn server, and the page in a real headless Chromium."""
from __future__ import annotations

import io
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jobs import cli, serve
from jobs.samples import datasets
from tests.conftest import ROOT, common_args, jpeg_bytes

MAX_UPLOAD = 1 << 20  # the test server's max_upload_bytes (the default is 20 MB)
COMPUTERS = "The compiler crashed again, so the programmer rebooted the Unix server and debugged the software."


@dataclass
class Built:
    root: Path
    images: Path
    gold: dict
    texts: pd.DataFrame

    def at(self, name: str) -> str:
        return str(self.root / name)


def ok(*argv: str) -> None:
    assert cli.main(list(argv)) == 0, argv


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory) -> Built:
    """40 Fashion-MNIST PNGs, a byte copy of one (a duplicate group) and a broken file, embedded, indexed
    twice (exact, and HNSW in shards), searched, deduplicated, ranked; 30 fortunes embedded, indexed and
    labelled zero-shot (the saved head)."""
    root = tmp_path_factory.mktemp("serve")
    images = root / "images"
    gold = datasets.write_fashion_mnist(images, 40, seed=5)
    first = sorted(gold)[0]
    shutil.copy(images / first, images / "copy.png")
    gold["copy.png"] = gold[first]
    (images / "broken.png").write_bytes(b"not an image")
    rows = pd.DataFrame(datasets.fortunes())
    texts = pd.concat([rows[rows.category == c].sample(6, random_state=3) for c in datasets.FORTUNE_CATEGORIES])
    texts[["id", "text"]].to_json(root / "texts.jsonl", orient="records", lines=True)
    (root / "gold.json").write_text(json.dumps({**gold, **dict(zip(texts.id, texts.category))}))
    common = common_args(root)
    ok("embed-images", "--input", str(images), "--output", str(root / "emb"), *common)
    ok("build-index", "--embeddings", str(root / "emb"), "--output", str(root / "index"), *common)
    ok("build-index", "--embeddings", str(root / "emb"), "--output", str(root / "hnsw"), "--factory", "HNSW16",
       "--set", "merge=none", *common)
    ok("search", "--index", str(root / "index"), "--queries", str(root / "emb"), "--k", "5", "--exclude-self",
       "--output", str(root / "nb"), *common)
    for job, out in (("dedup", "dd"), ("unique", "un")):
        ok(job, "--embeddings", str(root / "emb"), "--index", str(root / "index"), "--output", str(root / out), *common)
    ok("embed-texts", "--input", str(root / "texts.jsonl"), "--output", str(root / "text_emb"), *common)
    ok("build-index", "--embeddings", str(root / "text_emb"), "--output", str(root / "text_index"), *common)
    ok("assign-labels", "--embeddings", str(root / "text_emb"), "--labels", str(ROOT / "conf/labels_fortunes.yaml"),
       "--top-k", "5", "--set", f"head_output={root / 'head'}", "--output", str(root / "labels"), *common)
    return Built(root, images, gold, texts)


@pytest.fixture(scope="module")
def app_state(built):
    """Everything loaded once, as `sparkamp serve` loads it (a 1 MiB upload limit, Zmap on 300 words);
    torch's and faiss' thread counts, which the app sets for its process, are restored afterwards."""
    import faiss
    import torch

    from jobs.core import config
    from jobs.app import state

    keys = ["--index", built.at("index"), "--compare-index", built.at("hnsw"), "--embeddings", built.at("emb"),
            "--neighbours", built.at("nb"), "--duplicates", built.at("dd"), "--uniqueness", built.at("un"),
            "--gold", built.at("gold.json"), "--label-embeddings", built.at("text_emb"),
            "--label-set", str(ROOT / "conf/labels_fortunes.yaml"), "--labels-head", built.at("head"),
            "--output", built.at("applied"), "--k", "5"]
    sets = [f"max_upload_bytes={MAX_UPLOAD}", "max_text_chars=2000", "zmap_vocab_size=300",
            f"warehouse={built.at('wh')}", f"runs_table={built.at('runs')}"]
    flags = dict(zip([k[2:].replace("-", "_") for k in keys[::2]], keys[1::2]))
    cfg = config.load(serve.Config, sets=sets, flags=flags)
    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    yield state.load(serve.app_options(cfg))
    torch.set_num_threads(threads[0])
    faiss.omp_set_num_threads(threads[1])


@pytest.fixture(scope="module")
def client(app_state):
    from fastapi.testclient import TestClient

    from jobs.app import api

    with TestClient(api.create_app(app_state)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def live(app_state):
    """The same state behind a real uvicorn server on 127.0.0.1 and a free port: its base URL."""
    import uvicorn

    from jobs.app import api

    sock = serve.bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(api.create_app(app_state), log_config=None))  # pytest owns logging
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def png_of(built: Built, item_id: str) -> bytes:
    return (built.images / item_id).read_bytes()


def search(client, data: bytes, name: str = "q.png", k: int = 5):
    return client.post("/api/search", files={"image": (name, data, "image/png")}, data={"k": str(k)})


# ---- search and explore ----------------------------------------------------------------------

def test_uploaded_image_finds_itself_then_what_search_stored(built, client):
    query = sorted(built.gold)[5]
    answer = search(client, png_of(built, query), k=5).json()
    found = answer["neighbours"]
    assert [n["rank"] for n in found] == [1, 2, 3, 4, 5]
    assert found[0]["id"] == query and found[0]["score"] == pytest.approx(1.0, abs=1e-4)
    stored = pd.read_parquet(built.at("nb")).query("query_id == @query").sort_values("rank")
    # live embedding == the batch job's: the others are the search job's neighbours, same scores
    assert [n["id"] for n in found[1:]] == list(stored.neighbor_id[:4])
    assert [n["score"] for n in found[1:]] == pytest.approx(list(stored.score[:4]), abs=1e-4)
    assert answer["timings_ms"]["embed"] > 0 and answer["timings_ms"]["search"] >= 0
    assert set(answer["map"]) == {"x", "y"}


def test_item_neighbours_from_the_table_and_live_with_hits(built, client):
    query = sorted(built.gold)[7]
    table = client.get(f"/api/items/{query}/neighbours").json()
    stored = pd.read_parquet(built.at("nb")).query("query_id == @query").sort_values("rank")
    assert table["source"] == "neighbours table" and table["label"] == built.gold[query]
    assert [(n["rank"], n["id"]) for n in table["neighbours"]] == list(zip(stored["rank"], stored.neighbor_id))
    assert [n["hit"] for n in table["neighbours"]] == [built.gold[i] == built.gold[query] for i in stored.neighbor_id]
    live = client.get(f"/api/items/{query}/neighbours", params={"source": "index", "k": 4}).json()
    assert live["source"] == "index" and [n["id"] for n in live["neighbours"]] == list(stored.neighbor_id[:4])
    assert client.get("/api/items/no-such-id/neighbours").status_code == 404


def test_explore_pages_groups_unique_map_and_comparison(built, client):
    emb = pd.read_parquet(built.at("emb"))
    page = client.get("/api/items", params={"offset": 0, "limit": 500}).json()
    assert page["total"] == 42 and {i["id"] for i in page["items"]} == set(emb.id)
    broken = next(i for i in page["items"] if i["id"] == "broken.png")
    assert broken["status"] == "decode_error" and broken["error"]  # bad rows are shown, not dropped
    groups = client.get("/api/duplicates").json()
    table = pd.read_parquet(built.at("dd"))
    assert groups["total"] == table.group_id.nunique()
    assert any({m["id"] for m in g["members"]} >= {sorted(built.gold)[0], "copy.png"} for g in groups["groups"])
    unique = client.get("/api/unique", params={"limit": 3}).json()["items"]
    ranks = pd.read_parquet(built.at("un")).sort_values("rank").head(3)
    assert [u["id"] for u in unique] == list(ranks.id) and [u["rank"] for u in unique] == [1, 2, 3]
    atlas = client.get("/api/map/index").json()
    assert atlas["method"] == "pca" and len(atlas["points"]) == 41
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 and p["label"] == built.gold[p["id"]] for p in atlas["points"])
    query = sorted(built.gold)[3]
    sides = client.get(f"/api/items/{query}/compare").json()["indexes"]
    assert len(sides) == 2 and [n["id"] for n in sides[0]["neighbours"]] == [n["id"] for n in sides[1]["neighbours"]]
    hits = np.array([n["hit"] for n in sides[0]["neighbours"]])
    weights = (5 - np.arange(5)) / 5  # the prototype's rank weights at k = 5
    assert sides[0]["metrics"]["rank_weighted_precision"] == pytest.approx((hits * weights).sum() / weights.sum())
    overall = client.get("/api/compare").json()
    assert overall["queries"] == 41 and [side["queries"] for side in overall["indexes"]] == [41, 41]


def test_thumbnails_only_for_ids_in_the_table(built, client):
    item = sorted(built.gold)[2]
    shot = client.get(f"/api/thumbnails/{item}")
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(shot.content)).size == (28, 28)  # the PNG itself, never upscaled
    real_file = built.images / item
    for path in ("%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2fetc%2fpasswd", f"%2f{str(real_file)[1:]}",
                 f"..%2fimages%2f{item}", "..%2f..%2f" + item, "broken.png", "no-such-id"):
        response = client.get(f"/api/thumbnails/{path}")
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json" and "root:" not in response.text


def test_a_text_index_is_searched_by_typing(built):
    from fastapi.testclient import TestClient

    from jobs.app import api, state
    from jobs.app.corpus import CorpusFiles

    files = CorpusFiles(embeddings=built.at("text_emb"))
    loaded = state.load(state.AppOptions(built.at("text_index"), files=files, k=3))
    with TestClient(api.create_app(loaded)) as client:
        row = built.texts.iloc[2]
        answer = client.post("/api/search", data={"text": row.text}).json()
        assert answer["query"] == {"kind": "text", "chars": len(row.text)}
        first = answer["neighbours"][0]
        assert first["id"] == row.id and first["score"] == pytest.approx(1, abs=1e-4)
        image = search(client, jpeg_bytes())
        assert image.status_code == 400 and "search it with text" in image.json()["detail"]
        labels = client.post("/api/labels", json={"text": COMPUTERS, "labels": ["computers", "food"]}).json()
        assert labels["scores"][0]["label"] == "computers" and labels["map"] is not None  # the index's own map
        thumb = client.get(f"/api/thumbnails/{row.id}")
        assert thumb.status_code == 404 and "is not an image file" in thumb.json()["detail"]


def test_the_page_loads_only_its_own_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/docs").status_code == 404  # FastAPI's docs pages would load scripts from a CDN
    for path in ("/", "/static/app.js", "/static/app.css"):
        text = client.get(path).text
        assert "cdn" not in text.lower() and "https://" not in text and 'src="http' not in text, path


# ---- bad input ---------------------------------------------------------------------------------

def bomb_png() -> bytes:
    """A 10,000 x 10,000 1-bit PNG: 13 KB on disk, 300 MB as RGB pixels."""
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name, data, status, message", [
    ("notes.png", b"just some text, not an image", 415, "not an image this app reads"),
    ("empty.png", b"", 400, "the file is empty"),
    ("big.jpg", jpeg_bytes((64, 48)) + b"\0" * MAX_UPLOAD, 413, f"the limit is max_upload_bytes = {MAX_UPLOAD}"),
    ("bomb.png", None, 413, "over max_pixels = 64000000"),
    ("drawing.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', 415,
     "an SVG is a vector drawing"),
    ("cut.jpg", jpeg_bytes((640, 480))[:2700], 422, "cannot decode image"),
])
def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(built, client, name, data, status, message):
    response = search(client, bomb_png() if data is None else data, name)
    assert response.status_code == status and message in response.json()["detail"], response.text
    assert response.json()["status"] in ("empty", "too_large", "not_raster", "decode_error")
    assert client.get("/healthz").json()["status"] == "ok"
    assert search(client, png_of(built, sorted(built.gold)[1])).status_code == 200


def test_bad_requests_name_what_is_wrong(client):
    declared = search(client, b"\0" * 2 * MAX_UPLOAD)  # refused by its Content-Length, before it is read
    assert declared.status_code == 413 and declared.text == "Content Too Large"
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MiB, chunked: no Content-Length, counted as it arrives
    streamed = client.post("/api/search", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413
    assert f"limit of {MAX_UPLOAD} bytes (max_upload_bytes)" in streamed.json()["detail"]
    text = client.post("/api/search", data={"text": "a shoe"})
    assert text.status_code == 400 and "search it with an image" in text.json()["detail"]
    assert client.post("/api/search", data={"k": "5"}).status_code == 400
    assert client.post("/api/search", data={"text": "x", "k": "-3"}).status_code == 422
    huge = client.post("/api/labels", json={"text": "word " * 200_000, "labels": ["a", "b"]})
    assert huge.status_code == 413 and "max_text_chars = 2000" in huge.json()["detail"]
    assert client.post("/api/labels", json={"text": "  ", "labels": ["a", "b"]}).status_code == 400
    one = client.post("/api/labels", json={"text": "hello", "labels": ["only"]})
    assert one.status_code == 422 and "at least 2 labels" in one.json()["detail"]
    bogus = client.post("/api/labels", json={"text": "hello", "method": "bogus"})
    assert bogus.status_code == 422 and "zero-shot, zmap, head" in bogus.json()["detail"]


# ---- labels --------------------------------------------------------------------------------------

def test_label_scores_follow_the_edited_labels_and_the_head_matches_assign_labels(built, client):
    two = client.post("/api/labels", json={"text": COMPUTERS, "labels": ["computers", "food"]}).json()
    assert [s["label"] for s in two["scores"]] == ["computers", "food"] and two["method"] == "zero-shot"
    three = client.post("/api/labels", json={"text": COMPUTERS, "labels": ["sports", "law", "computers"]}).json()
    assert sorted(s["label"] for s in three["scores"]) == ["computers", "law", "sports"]
    assert three["scores"][0] == pytest.approx(two["scores"][0])  # same label text, same score
    row = built.texts.iloc[0]
    head = client.post("/api/labels", json={"text": row.text, "method": "head"}).json()
    stored = pd.read_parquet(built.at("labels")).query("id == @row.id").sort_values("rank")
    assert [s["label"] for s in head["scores"]] == list(stored.label)
    assert [s["score"] for s in head["scores"]] == pytest.approx(list(stored.score), abs=1e-4)
    assert set(head["map"]) == {"x", "y"}


def test_zmap_is_fitted_once_in_the_background_then_maps_the_labels(client, app_state):
    from jobs.labelling import methods
    from udfs import texts
    from udfs.heads import Head

    query = {"text": COMPUTERS, "labels": ["computers", "food", "sports"], "method": "zmap"}
    first = client.post("/api/labels", json=query)
    assert first.status_code == 503 and "being fitted on 300 words" in first.json()["detail"]
    assert first.headers["retry-after"] == "5"
    deadline = time.time() + 120
    while (answer := client.post("/api/labels", json=query)).status_code == 503 and time.time() < deadline:
        time.sleep(1)
    assert answer.status_code == 200
    # the same scores as assign-labels' Zmap method with vocab_size 300: labels mapped, the text mapped
    playground = app_state.playground
    label_set = playground.labels_from(query["labels"])
    z = methods.zmap(playground.encoder, "", 300, 10.0)
    def embed(batch: list[str]) -> np.ndarray:
        return texts.embed_texts(playground.encoder, batch, 32).embeddings

    labels = methods.label_vectors_of(label_set, embed)
    head = Head("zmap", label_set.names, labels @ z / np.linalg.norm(labels @ z, axis=1, keepdims=True), z)
    expected = head.scores(embed([COMPUTERS]))[0]
    got = {s["label"]: s["score"] for s in answer.json()["scores"]}
    assert [got[name] for name in label_set.names] == pytest.approx(list(expected), abs=1e-4)
    zero_shot = client.post("/api/labels", json={**query, "method": "zero-shot"}).json()["scores"]
    assert {s["label"]: s["score"] for s in zero_shot} != pytest.approx(got, abs=1e-3)


def test_apply_to_the_table_runs_assign_labels_in_the_background(built, client):
    labels = ["computers", "food", "law", "medicine", "sports"]
    task = client.post("/api/labels/apply", json={"labels": labels}).json()
    assert task["state"] == "running" and task["output"].startswith(built.at("applied"))
    busy = client.post("/api/labels/apply", json={"labels": labels})
    assert busy.status_code == 409
    seen = []
    while task["state"] == "running":
        time.sleep(1)
        task = client.get(f"/api/tasks/{task['task']}").json()
        seen.append(task["progress"])
    assert task["state"] == "done", task
    assert seen == sorted(seen) and seen[-1] == 1.0
    table = pd.read_parquet(task["output"])
    assert len(table) == 3 * len(built.texts) and set(table.label) <= set(labels)  # top 3 of each text
    rows = client.get(f"/api/tasks/{task['task']}/rows", params={"limit": 4}).json()["rows"]
    assert len(rows) == 4 and {r["id"] for r in rows} <= set(built.texts.id)


# ---- a real server ----------------------------------------------------------------------------

def test_eight_concurrent_clients_of_25_searches(built, live):
    import httpx

    items = sorted(built.gold)[:8]

    def client_run(item: str) -> list[tuple[int, str]]:
        with httpx.Client(base_url=live, timeout=60) as http:
            out = []
            for _ in range(25):
                response = http.post("/api/search", files={"image": (item, png_of(built, item))}, data={"k": "3"})
                out.append((response.status_code, response.json()["neighbours"][0]["id"]))
            return out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client_run, items))
    # an image's top hit is itself or a byte-identical copy (items[0] has one, copy.png): both score
    # 1.0 up to float noise, so which comes first is not the server's to promise
    same_bytes = {item: {other for other in built.gold if png_of(built, other) == png_of(built, item)}
                  for item in items}
    assert len(same_bytes[items[0]]) == 2 and all(len(same_bytes[item]) == 1 for item in items[1:])
    assert all(status == 200 and top in same_bytes[item] for item, run in zip(items, results) for status, top in run)
    assert all(len(run) == 25 for run in results)


def test_the_listening_socket_lets_asyncio_turn_nagle_off():
    import socket

    sock = serve.bind("127.0.0.1", 0)  # a socket without proto IPPROTO_TCP kept Nagle on: 44 ms an answer
    assert (sock.family, sock.type, sock.proto) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven by chromedriver from Debian (never Selenium Manager: no network)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian `chromium` and `chromium-driver` are missing: `make test` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield session
    session.quit()


def test_the_page_in_headless_chromium(built, live, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(live + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")

    def cards(selector: str) -> list[str]:
        return [c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, f"{selector} .card")]

    query = sorted(built.gold)[5]  # upload an image: its neighbours, itself first
    browser.find_element(By.ID, "file").send_keys(str(built.images / query))
    wait.until(lambda d: len(cards("#results")) == 5)
    assert cards("#results")[0] == query and "ms" in browser.find_element(By.ID, "search-timings").text
    wait.until(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                             for img in d.find_elements(By.CSS_SELECTOR, "#results img")))
    clicked = cards("#results")[1]  # click a result: its own neighbours, itself left out
    browser.find_element(By.CSS_SELECTOR, f'#results .card[data-id="{clicked}"]').click()
    wait.until(lambda d: clicked in d.find_element(By.ID, "query-title").text)
    wait.until(lambda d: len(cards("#results")) == 5 and clicked not in cards("#results"))
    stored = pd.read_parquet(built.at("nb")).query("query_id == @clicked").sort_values("rank")
    assert cards("#results") == list(stored.neighbor_id)
    shot = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L"), np.float32)
    assert shot.std() > 20 and (shot < 128).mean() > 0.02  # not blank: the header, text and thumbnails

    browser.find_element(By.CSS_SELECTOR, '.tab[data-tab="labels"]').click()
    def bars(d) -> list[str]:  # read in one script: the page re-renders the bars while they are read
        return d.execute_script("return [...document.querySelectorAll('#bars .bar')].map(b => b.dataset.label)")

    browser.find_element(By.ID, "label-text").send_keys(COMPUTERS)
    labels = browser.find_element(By.ID, "label-list")
    labels.clear()
    labels.send_keys("computers\nfood")  # two labels typed: two bars, computers first
    browser.find_element(By.ID, "label-go").click()
    wait.until(lambda d: bars(d) == ["computers", "food"])
    labels.send_keys("\nsports: games, players and teams")  # edited: the bars follow
    wait.until(lambda d: sorted(bars(d)) == ["computers", "food", "sports"])
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#bars .bar-fill')].map(b => b.getBoundingClientRect().width)")
    assert widths[0] > widths[-1] > 0
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


# ---- config ----------------------------------------------------------------------------------

def test_bad_serve_configs_fail_before_serving(built, tmp_path, capsys):
    damaged = tmp_path / "index"
    shutil.copytree(built.at("index"), damaged)
    index_file = next(damaged.glob("*.faiss"))
    damaged_bytes = bytearray(index_file.read_bytes())
    damaged_bytes[len(damaged_bytes) // 2] ^= 0xFF
    index_file.write_bytes(bytes(damaged_bytes))
    taken = serve.bind("127.0.0.1", 0)
    cases = [(["--index", str(tmp_path / "missing")], "key 'index': "),
             (["--index", built.at("index"), "--embeddings", "table:db.emb"], "serve reads Parquet paths"),
             (["--index", built.at("index"), "--port", "70000"], "key 'port' must be 0 to 65535"),
             (["--index", built.at("index"), "--port", str(taken.getsockname()[1])], "cannot listen on"),
             (["--index", str(damaged), "--port", "0"], "the file was changed or damaged"),
             (["--index", built.at("index"), "--label-embeddings", built.at("nb"), "--port", "0"],
              "has no column id, embedding, model")]
    for args, message in cases:
        assert cli.main(["serve", *args, *common_args(tmp_path)]) == 2, args
        assert message in capsys.readouterr().err, args
    taken.close()
