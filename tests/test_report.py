"""report end to end: tiny real pipelines (Fashion-MNIST images, fortunes texts) through the real jobs, the
page's HTML, and the page rendered by headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import escape, unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jobs import cli
from jobs.samples import datasets
from tests.conftest import ROOT, common_args

HOSTILE_FILE = "<img src=x onerror=alert(1)>.png"  # a file name that is markup
HOSTILE_TEXT = '<script>alert("x")</script> & a computer that runs "rm -rf" all day'
CARD = re.compile(r'<figure class="card ?([a-z ]*)" title="([^"]*)">(<img|<div class="ph"|<p class="snip")')


def ok(*argv: str) -> None:
    assert cli.main(list(argv)) == 0, argv


@pytest.fixture(scope="module")
def images(spark, tmp_path_factory):
    """61 images embedded (60 Fashion-MNIST, a byte copy under a hostile name) plus a non-image; one
    image deleted after embedding; then indexed, searched, deduplicated, ranked and evaluated."""
    root = tmp_path_factory.mktemp("report-images")
    folder = root / "images"
    classes = datasets.write_fashion_mnist(folder, 60, seed=3)
    original = sorted(classes)[0]
    shutil.copy(folder / original, folder / HOSTILE_FILE)
    classes[HOSTILE_FILE] = classes[original]
    (folder / "broken.png").write_bytes(b"not an image")
    (root / "gold.json").write_text(json.dumps(classes))
    emb, index, nb = str(root / "emb"), str(root / "index"), str(root / "nb")
    ok("embed-images", "--input", str(folder), "--output", emb, *common_args(root))
    deleted = sorted(classes)[1]
    (folder / deleted).unlink()  # its row stays ok; its thumbnail cannot be made
    ok("build-index", "--embeddings", emb, "--output", index, *common_args(root))
    ok("search", "--index", index, "--queries", emb, "--k", "6", "--exclude-self", "--output", nb,
       *common_args(root))
    ok("dedup", "--embeddings", emb, "--index", index, "--output", str(root / "dd"), *common_args(root))
    ok("unique", "--embeddings", emb, "--index", index, "--output", str(root / "un"), *common_args(root))
    ok("evaluate", "--neighbours", nb, "--gold", str(root / "gold.json"), "--output", str(root / "metrics"),
       *common_args(root))
    return root, classes, original, deleted


@pytest.fixture(scope="module")
def image_report(images):
    root = images[0]
    ok("report", "--output", str(root / "report"), "--embeddings", str(root / "emb"), "--neighbours",
       str(root / "nb"), "--unique", str(root / "un"), "--dedup", str(root / "dd"), "--metrics",
       str(root / "metrics"), "--gold", str(root / "gold.json"), "--set", "max_queries=100",
       *common_args(root))
    return root / "report" / "index.html"


@pytest.fixture(scope="module")
def texts(spark, tmp_path_factory) -> Path:
    """12 fortunes per category plus a hostile one, embedded, zero-shot labelled (top 2), evaluated."""
    root = tmp_path_factory.mktemp("report-texts")
    rows = pd.DataFrame(datasets.fortunes())
    rng = np.random.default_rng(7)
    picked = pd.concat([rows[rows.category == c].iloc[rng.permutation(int((rows.category == c).sum()))[:12]]
                        for c in datasets.FORTUNE_CATEGORIES])
    picked = pd.concat([picked, pd.DataFrame([{"id": "hostile", "category": "computers", "text": HOSTILE_TEXT}])])
    picked[["id", "text"]].to_json(root / "texts.jsonl", orient="records", lines=True)
    picked[["id", "category"]].rename(columns={"category": "label"}).to_csv(root / "gold.csv", index=False)
    ok("embed-texts", "--input", str(root / "texts.jsonl"), "--output", str(root / "emb"), *common_args(root))
    ok("assign-labels", "--embeddings", str(root / "emb"), "--labels", str(ROOT / "conf/labels_fortunes.yaml"),
       "--top-k", "2", "--output", str(root / "labels"), *common_args(root))
    ok("evaluate", "--labels-table", str(root / "labels"), "--gold", str(root / "gold.csv"), "--output",
       str(root / "metrics"), *common_args(root))
    return root


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', page)


def section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}"')
    return page[start:page.index("</section>", start)]


def test_image_report_sections_thumbnails_hits_and_escaping(spark, images, image_report):
    root, classes, original, deleted = images
    page = image_report.read_text()
    assert section_ids(page) == ["neighbours", "unique", "duplicates", "map", "retrieval", "runs"]
    assert "http://" not in page and "https://" not in page  # nothing to fetch

    grid = section(page, "neighbours")
    cards = CARD.findall(grid)
    assert grid.count('<div class="query">') == 61 and len(cards) == 61 * 7  # every query, 6 neighbours
    placeholders = {title for _, title, body in cards if body == '<div class="ph"'}
    assert placeholders == {escape(deleted)}  # the deleted file: a box, not a broken image
    assert all(body == "<img" for _, title, body in cards if title != escape(deleted))
    marks = [verdict for verdict, _, _ in cards]
    hits, misses = marks.count("hit"), marks.count("miss")
    assert hits + misses == 61 * 6  # every item has a gold label
    metrics = pd.read_parquet(root / "metrics")
    precision = metrics[(metrics.metric == "precision@6") & metrics["class"].isna()].value.item()
    assert hits / (hits + misses) == pytest.approx(precision)  # the page agrees with evaluate
    assert precision > 0.35  # 10 classes, 6 items each: chance 0.09; measured 0.46

    assert HOSTILE_FILE not in page and escape(HOSTILE_FILE) in page
    groups = section(page, "duplicates")  # the byte copy and its original, side by side
    assert f'title="{escape(HOSTILE_FILE)}"' in groups and f'title="{escape(original)}"' in groups
    assert len(CARD.findall(section(page, "unique"))) == 2 * 24  # each item and its nearest
    assert section(page, "map").count("<circle ") == 61
    assert "precision@6" in section(page, "retrieval")
    runs = section(page, "runs")
    assert all(f"<th>{job}</th>" in runs for job in ("embed-images", "build-index", "search", "dedup",
                                                        "unique", "evaluate"))
    assert "decode_error 1" in runs  # broken.png, counted by embed-images


@pytest.fixture(scope="module")
def text_report(texts):
    out = texts / "report"
    ok("report", "--output", str(out), "--embeddings", str(texts / "emb"), "--labels", str(texts / "labels"),
       "--metrics", str(texts / "metrics"), "--gold", str(texts / "gold.csv"), "--texts",
       str(texts / "texts.jsonl"), "--runs", "none", "--set", "max_queries=100", *common_args(texts))
    return out / "index.html"


def test_text_report_predictions_classification_and_map(spark, texts, text_report):
    page = text_report.read_text()
    assert section_ids(page) == ["map", "predictions", "classification"]
    assert '<script>alert("x")' not in page and "\\u003cscript\\u003ealert" in page  # map data, escaped
    cards = CARD.findall(section(page, "predictions"))
    assert len(cards) == 61 and all(body == '<p class="snip"' for _, _, body in cards)
    assert escape(HOSTILE_TEXT) in section(page, "predictions")
    metrics = pd.read_parquet(texts / "metrics")
    accuracy = metrics[(metrics.metric == "accuracy")].value.item()
    assert [v for v, _, _ in cards].count("hit") / 61 == pytest.approx(accuracy) and accuracy > 0.6
    classification = section(page, "classification")
    assert f"<b>{accuracy:.3f}</b>accuracy" in classification and "top 2 accuracy" in classification
    cells = re.findall(r'<td class="[a-z]*" style="[^"]*">(\d*)</td>', classification)
    assert sum(int(c) for c in cells if c) == 61  # the confusion matrix counts every item once
    legend = section(page, "map")
    assert legend.count("<circle ") == 61 and 'id="map-colour"' in legend  # gold or predicted colours


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium, offline: no sandbox (root), no GPU, no background network, a private profile."""
    binary = shutil.which("chromium")
    assert binary, "Debian `chromium` is missing: `make test` installs it"
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--disable-extensions", "--disable-default-apps", "--no-first-run",
                           "--no-default-browser-check", "--hide-scrollbars", "--virtual-time-budget=5000",
                           *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("report, sections, tip", [
    ("image_report", "neighbours unique duplicates map retrieval runs", "gold: "),
    ("text_report", "map predictions classification", "predicted: "),
])
def test_report_renders_in_headless_chromium(request, tmp_path, report, sections, tip):
    page = request.getfixturevalue(report)
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    shot = tmp_path / "report.png"
    done = chromium(profile, f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert pixels.shape == (4000, 1280) and pixels.std() > 20  # not a blank page
    assert (pixels < 128).mean() > 0.02  # dark pixels: the header, text and items on white

    dom = chromium(profile, "--dump-dom", "--enable-logging=stderr", "--v=0", page.as_uri() + "#self-test")
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stderr[-2000:]
    checks = {k: unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1))}
    assert checks.get("checked") == "complete", checks
    assert checks["broken-images"] == "0" and checks["console-errors"] == "0", checks
    assert checks["sections"] == sections
    assert int(checks["images"]) == page.read_text().count('<img src="data:image/')
    assert tip in checks["tip"], checks  # hovering a point shows its item
    if report == "text_report":
        assert checks["legend"] == "predicted"  # the colour menu switched the legend
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


@pytest.mark.parametrize("args, message", [
    (["--output", "table:db.report", "--runs", "none", "--unique", "x"], "is a folder (index.html), not a table"),
    (["--output", "r", "--set", "mode=append"], "a report is one page"),
    (["--output", "r", "--neighbours", "missing"], "key 'neighbours': 'missing' does not exist"),
    (["--output", "r", "--set", "sample=0"], "key 'sample' must be > 0"),
])
def test_bad_report_configs_fail_before_spark(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", *args, *common_args(tmp_path)]) == 2
    assert message in capsys.readouterr().err
