"""Hostile inputs, made inside the tests, through the real jobs: each is one row with a specific status.

One embed-images run over a folder of every hostile image, one embed-texts run per input format.
"""
from __future__ import annotations

import io
import json
import logging
import os
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs import cli, embed_images
from jobs.core import config
from jobs.tables import listing
from tests.conftest import common_args

MEGABYTE_OF_WORDS = "word " * 200_000  # 1 MB; far past MiniLM's 256-token window and max_chars


@dataclass
class Run:
    code: int
    rows: pd.DataFrame  # the output, id as a column (a malformed JSON line has none)
    summary: dict       # the run's row in the runs table
    warnings: list[str]  # what the reading code logged
    source: Path | None = None

    def row(self, item_id: str) -> pd.Series:
        (row,) = self.rows[self.rows.id == item_id].itertuples(index=False)
        return pd.Series(row._asdict())


class Warnings(logging.Handler):
    """What is logged at WARNING and above, kept."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_job(spark, work: Path, job: str, source: Path, *args: str) -> Run:
    """`sparkamp job --input source` with its own output, warehouse and runs table under `work`."""
    caught, logger = Warnings(), logging.getLogger("jobs")
    logger.addHandler(caught)
    try:
        code = cli.main([job, "--input", str(source), "--output", str(work / "out"), *args,
                         *common_args(work)])
    finally:
        logger.removeHandler(caught)
    rows = spark.read.parquet(str(work / "out")).toPandas() if code == 0 else pd.DataFrame()
    (summary,) = [pq.read_table(f).to_pylist()[0] for f in (work / "runs").glob("run-*.parquet")] or [{}]
    return Run(code, rows, summary, caught.messages, source)


def assert_every_input_is_one_counted_row(run: Run, expected: dict) -> None:
    """Exit 0; rows out == inputs, ids unique; the summary counts each status; errors iff not ok."""
    assert run.code == 0
    assert sorted(run.rows.id, key=str) == sorted(expected, key=str)
    assert run.rows.id.is_unique
    statuses = Counter(expected.values())
    assert dict(Counter(run.rows.status)) == statuses
    assert (run.summary["rows_in"], run.summary["rows_out"]) == (len(expected), len(expected))
    assert json.loads(run.summary["statuses"]) == statuses
    assert run.summary["rows_ok"] == statuses["ok"]
    failed, ok = run.rows[run.rows.status != "ok"], run.rows[run.rows.status == "ok"]
    assert failed.embedding.isna().all() and failed.error.str.len().gt(10).all()
    assert ok.error.isna().all()
    vectors = np.stack(ok.embedding.to_numpy())
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)


def cosine(run: Run, a: str, b: str) -> float:
    return float(np.dot(run.row(a).embedding, run.row(b).embedding))


# ---- images --------------------------------------------------------------------------------------

def encode(img: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def discs(seed: int, size=(320, 240)) -> Image.Image:
    """Coloured discs on black: enough structure for the CNN to tell two images apart."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    for _ in range(6):
        cx, cy, r = rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(20, 80)
        arr[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    return Image.fromarray(arr)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width × height RGB pixels; its IDAT holds one row of them."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(1 + 3 * width), 9)) + chunk(b"IEND", b""))


# id → (status, words its error must hold); decided: PIL's partial decode of a truncated JPEG is
# refused (its missing part would be embedded as grey), a directory named x.jpg is walked, not an item.
HOSTILE_IMAGES = {
    "truncated.jpg": ("decode_error", "truncated"),
    "empty.jpg": ("empty", "0 bytes"),
    "random.jpg": ("decode_error", "not a recognised image format"),
    "bomb.png": ("too_large", "2500000000 pixels"),
    "fifo.jpg": ("read_error", "not a regular file"),
    "dangling.jpg": ("read_error", "No such file"),
    "one_pixel.png": ("ok", None),
    "gray16.png": ("ok", None),
    "cmyk.jpg": ("ok", None),
    "palette_alpha.png": ("ok", None),
    "animated.gif": ("ok", None),
    "exif_rotated.jpg": ("ok", None),
    "x.jpg/inner.jpg": ("ok", None),
    "_DSC0001.JPG": ("ok", None),  # Spark's file index skipped `_` names
    "notes.txt": ("not_an_image", "not an image"),
}


def write_images(folder: Path) -> dict[str, str]:
    """Every hostile image and the twins they are compared with; returns {id: expected status}."""
    files: dict[str, bytes] = {}
    photo = encode(discs(0, (640, 480)), "JPEG", quality=90)
    files["truncated.jpg"] = photo[: len(photo) * 6 // 10]
    files["empty.jpg"] = b""
    files["random.jpg"] = np.random.default_rng(0).bytes(4000)
    files["bomb.png"] = png_claiming(50_000, 50_000)
    files["one_pixel.png"] = encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")
    gray = np.asarray(discs(1).convert("L"))
    files["gray16.png"] = encode(Image.fromarray(gray.astype(np.uint16) * 257), "PNG")
    files["gray8.png"] = encode(Image.fromarray(gray), "PNG")
    files["cmyk.jpg"] = encode(discs(2).convert("CMYK"), "JPEG", quality=95)
    files["rgb.jpg"] = encode(discs(2), "JPEG", quality=95)
    index = np.asarray(discs(3).convert("L")) // 64  # four colours; index 0 (background) transparent
    palette = Image.fromarray(index.astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 250, 40, 40, 40, 250, 40, 40, 40, 250])
    files["palette_alpha.png"] = encode(palette, "PNG", transparency=0)
    over_white = np.asarray(palette.convert("RGB")).copy()
    over_white[index == 0] = 255
    files["palette_over_white.png"] = encode(Image.fromarray(over_white), "PNG")
    first, second = discs(4), discs(5)
    files["animated.gif"] = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    files["first_frame.gif"] = encode(first, "GIF")
    files["second_frame.gif"] = encode(second, "GIF")
    wide = discs(6).resize((1200, 600))  # big enough for a reduced-size JPEG decode before rotating
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    files["exif_rotated.jpg"] = encode(wide, "JPEG", quality=95, exif=exif)
    files["upright.jpg"] = encode(wide.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95)
    files["unrotated.jpg"] = encode(wide, "JPEG", quality=95)
    files["x.jpg/inner.jpg"] = encode(discs(7), "JPEG")
    files["_DSC0001.JPG"] = encode(discs(8), "JPEG")
    files[".hidden.jpg"] = encode(discs(9), "JPEG")  # hidden: not an input
    files["notes.txt"] = b"an image neither by name nor by content: a not_an_image row"
    files["locked.jpg"] = encode(discs(10), "JPEG")
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "fifo.jpg")  # opening it would wait for a writer forever
    (folder / "dangling.jpg").symlink_to(folder / "moved-away.jpg")
    (folder / "locked.jpg").chmod(0)
    expected = {name: HOSTILE_IMAGES.get(name, ("ok",))[0] for name in [*files, "fifo.jpg", "dangling.jpg"]
                if not name.startswith(".")}
    expected["locked.jpg"] = "ok" if readable(folder / "locked.jpg") else "read_error"
    return expected


def readable(path: Path) -> bool:
    """Whether this process can read `path` despite its mode (root can)."""
    try:
        path.open("rb").close()
        return True
    except PermissionError:
        return False


@pytest.fixture(scope="module")
def images_run(spark, tmp_path_factory) -> tuple[Run, dict, Path]:
    folder = tmp_path_factory.mktemp("hostile-images")
    expected = write_images(folder)
    return run_job(spark, tmp_path_factory.mktemp("images-run"), "embed-images", folder), expected, folder


def test_every_image_is_one_row_with_its_status_and_counted(images_run):
    run, expected, _ = images_run
    assert_every_input_is_one_counted_row(run, expected)
    assert len(png_claiming(50_000, 50_000)) < 1000  # the bomb's pixels were never allocated


@pytest.mark.parametrize("name", HOSTILE_IMAGES)
def test_hostile_image_status_and_error(images_run, name):
    run, _, _ = images_run
    status, words = HOSTILE_IMAGES[name]
    row = run.row(name)
    assert row.status == status, row.error
    assert (row.error is None) if words is None else (words in row.error), row.error


def test_animated_gif_is_embedded_as_its_first_frame(images_run):
    run, _, _ = images_run
    assert cosine(run, "animated.gif", "first_frame.gif") > 0.9999
    assert cosine(run, "animated.gif", "second_frame.gif") < 0.9


def test_exif_rotation_is_applied(images_run):
    run, _, _ = images_run
    upright = cosine(run, "exif_rotated.jpg", "upright.jpg")
    assert upright > 0.99 and upright - cosine(run, "exif_rotated.jpg", "unrotated.jpg") > 0.1


def test_sixteen_bit_palette_alpha_and_cmyk_match_their_rgb_twins(images_run):
    run, _, _ = images_run
    assert cosine(run, "gray16.png", "gray8.png") > 0.9999
    assert cosine(run, "palette_alpha.png", "palette_over_white.png") > 0.9999  # alpha over white
    assert cosine(run, "cmyk.jpg", "rgb.jpg") > 0.95


def test_a_directory_named_like_an_image_is_walked_not_embedded(images_run):
    run, _, folder = images_run
    assert (folder / "x.jpg").is_dir() and "x.jpg" not in set(run.rows.id)
    assert run.row("x.jpg/inner.jpg").source == f"file:{folder}/x.jpg/inner.jpg"


def test_unreadable_file_is_a_read_error(images_run):
    run, _, folder = images_run
    if readable(folder / "locked.jpg"):
        pytest.skip("this process reads a chmod 000 file (it runs as root): nothing to refuse")
    row = run.row("locked.jpg")
    assert row.status == "read_error" and "permission denied" in row.error


def test_globs_list_underscore_and_colon_names(spark, tmp_path):
    """Hadoop's glob fails on a `:` in any name it meets; Spark's file index skips `_` names."""
    for name in ("_DSC0001.JPG", "12:30:00.jpg", "a.png", "b.gif", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    listed = listing.list_files(spark, f"{tmp_path}/*.{{jpg,JPG,png}}").items
    assert sorted(r.id for r in listed.collect()) == ["12:30:00.jpg", "_DSC0001.JPG", "a.png"]


# ---- texts ---------------------------------------------------------------------------------------

ARABIC = "مباراة كرة القدم كانت رائعة الليلة"
HEBREW = "המשחק היה נהדר הלילה"
TEXTS = {  # id → (text, expected status)
    "null": (None, "empty"),
    "blank": ("", "empty"),
    "whitespace": (" \t\n\u3000 ", "empty"),
    "megabyte": (MEGABYTE_OF_WORDS, "ok"),
    "emoji": ("Great match tonight ⚽🔥", "ok"),
    "emoji_only": ("🔥🎉", "no_known_words"),  # all [UNK]: every such text got one same vector
    "arabic": (ARABIC, "ok"),
    "arabic_emoji": (f"🔥 {ARABIC} ⚽", "ok"),
    "arabic_law": ("المحكمة أصدرت حكمها في القضية", "ok"),
    "hebrew": (HEBREW, "ok"),
    "hebrew_again": (f"{HEBREW}!! 🎉", "ok"),
    "english": ("The court ruled on the contract", "ok"),
}


@pytest.fixture(scope="module")
def jsonl_run(spark, tmp_path_factory) -> Run:
    source = tmp_path_factory.mktemp("jsonl") / "texts.jsonl"
    lines = [json.dumps({"id": i, "text": text}, ensure_ascii=False) for i, (text, _) in TEXTS.items()]
    lines += ['{"id": "no_text_key"}', '{"id": "number", "text": 42}', '{"id": "cut", "text": "unterminated']
    data = "\ufeff" + "\n".join(lines) + "\n"  # a BOM: never part of the first key
    source.write_bytes(data.encode() + b'{"id": "latin1", "text": "caf\xe9"}\n{"id": "note_latin1", '
                       b'"text": "fine", "note": "caf\xe9"}\n')
    return run_job(spark, tmp_path_factory.mktemp("jsonl-run"), "embed-texts", source)


def test_jsonl_texts_one_row_each_with_a_specific_status(jsonl_run):
    expected = {i: status for i, (_, status) in TEXTS.items()}
    expected.update({"no_text_key": "empty", "number": "ok", None: "malformed", "latin1": "decode_error",
                     "note_latin1": "ok"})  # bad bytes in a column that is not the text do not matter
    assert_every_input_is_one_counted_row(jsonl_run, expected)
    errors = jsonl_run.rows.set_index("id").error
    assert errors["null"] == "the text is null" and errors["blank"] == "the text is empty"
    assert errors["whitespace"] == "the text is only whitespace"
    assert errors["emoji_only"] == "none of its 1 tokens is known to all-MiniLM-L6-v2"
    assert json.loads(jsonl_run.summary["stats"])["truncated"] == 1  # the megabyte
    assert errors["latin1"] == (f"line 16 of file:{jsonl_run.source}: column 'text' is not valid UTF-8: "
                                "byte(s) e9 at character 3 of 'caf\ufffd'")


def test_a_line_that_is_not_json_is_a_row_and_a_warning(jsonl_run):
    broken = jsonl_run.rows[jsonl_run.rows.id.isna()]
    assert len(broken) == 1 and broken.status.iloc[0] == "malformed"
    assert broken.error.iloc[0] == (f"line 15 of file:{jsonl_run.source}: not JSON: Unterminated string "
                                    """starting at column 23: '{"id": "cut", "text": "unterminated'""")
    unread, undecodable = jsonl_run.warnings
    assert "1 records cannot be read as they are" in unread and '"text": "unterminated' in unread
    assert "2 records hold bytes that are not valid UTF-8" in undecodable


def test_right_to_left_and_emoji_texts_find_their_own_kind(jsonl_run):
    others = ["arabic_law", "hebrew", "english", "emoji"]
    near = max(["arabic_emoji", *others], key=lambda o: cosine(jsonl_run, "arabic", o))
    assert near == "arabic_emoji"
    near = max(["hebrew_again", "arabic", "arabic_law", "english", "emoji"],
               key=lambda o: cosine(jsonl_run, "hebrew", o))
    assert near == "hebrew_again"


def test_ragged_csv_rows_are_rows_and_are_reported(spark, tmp_path):
    """A row with more or fewer fields than the header is a `malformed` row with its raw line as the
    error, and both are named in a warning."""
    source = tmp_path / "news.csv"
    source.write_bytes(b'id,text\nplain,Rivers flow to the sea\nquoted,"Commas, inside quotes"\n'
                       b'multiline,"two\nlines"\nlong,too,many,fields\nshort\nblank,\nspaces,"   "\n'
                       b'latin1,caf\xe9 au lait\n')
    run = run_job(spark, tmp_path, "embed-texts", source)
    assert_every_input_is_one_counted_row(run, {"plain": "ok", "quoted": "ok", "multiline": "ok",
                                                "long": "malformed", "short": "malformed", "blank": "empty",
                                                "spaces": "empty", "latin1": "decode_error"})
    unread, undecodable = run.warnings
    assert "2 records cannot be read as they are" in unread and "'long,too,many,fields'" in unread
    assert "1 records hold bytes that are not valid UTF-8" in undecodable
    assert run.row("long").error == (f"line 6 of file:{source}: 4 fields, the header has 2: "
                                     "'long,too,many,fields'")
    assert run.row("latin1").error == (f"line 10 of file:{source}: column 'text' is not valid UTF-8: "
                                       "byte(s) e9 at character 3 of 'caf\ufffd au lait'")


def test_parquet_strings_with_invalid_utf8_are_decode_errors(spark, tmp_path):
    """Arrow refuses an invalid UTF-8 string (it would fail the task); a Hive table of latin-1 text has
    them: that row is a decode_error naming the column and row, the others are embedded."""
    ids = ["fine", "null", "blank", "megabyte", "latin1"]
    raw = pa.array([b"fine text", None, b"", MEGABYTE_OF_WORDS.encode(), b"caf\xe9 au lait"], pa.binary())
    pq.write_table(pa.table({"id": ids, "text": raw.view(pa.string())}), tmp_path / "t.parquet")
    run = run_job(spark, tmp_path, "embed-texts", tmp_path / "t.parquet")
    assert_every_input_is_one_counted_row(run, {"fine": "ok", "null": "empty", "blank": "empty",
                                                "megabyte": "ok", "latin1": "decode_error"})
    assert json.loads(run.summary["stats"])["truncated"] == 1
    assert run.row("fine").source.endswith("t.parquet#fine")
    assert run.row("latin1").error == (f"row 5 of file:{tmp_path}/t.parquet: column 'text' is not valid "
                                       "UTF-8: caf\ufffd au lait")


def test_text_dir_files(spark, tmp_path):
    docs = tmp_path / "docs"
    (docs / "_drafts").mkdir(parents=True)
    files = {"a.txt": "Rivers flow to the sea.".encode(), "latin1.txt": "café".encode("latin-1"),
             "utf16.txt": "hello".encode("utf-16"), "empty.txt": b"", "spaces.txt": b" \n\t ",
             "megabyte.txt": MEGABYTE_OF_WORDS.encode(), "bom.txt": "\ufeffA byte order mark".encode(),
             "_drafts/b.txt": "An underscore folder".encode()}
    for name, data in files.items():
        (docs / name).write_bytes(data)
    os.mkfifo(docs / "pipe.txt")
    run = run_job(spark, tmp_path, "embed-texts", docs)
    assert_every_input_is_one_counted_row(run, {
        "a.txt": "ok", "latin1.txt": "decode_error", "utf16.txt": "decode_error", "empty.txt": "empty",
        "spaces.txt": "empty", "megabyte.txt": "ok", "bom.txt": "ok", "_drafts/b.txt": "ok",
        "pipe.txt": "read_error"})
    assert "not valid UTF-8" in run.row("latin1.txt").error
    assert json.loads(run.summary["stats"])["truncated"] == 1


def test_binary_text_column_with_invalid_utf8_and_repeated_ids(spark, tmp_path):
    """A binary text column is decoded by the worker: bad bytes are a decode_error row; a repeated id is
    a duplicate_id row naming the row that is used (the first, by row index)."""
    pq.write_table(pa.table({"id": ["fine", "latin1", "fine"], "text": [b"fine text", b"caf\xe9", b"again"]}),
                   tmp_path / "b.parquet")
    run = run_job(spark, tmp_path, "embed-texts", tmp_path / "b.parquet")
    assert run.code == 0
    rows = run.rows.sort_values("status")
    assert rows[["id", "status"]].values.tolist() == [["latin1", "decode_error"], ["fine", "duplicate_id"],
                                                      ["fine", "ok"]]
    assert rows.error.tolist()[:2] == [
        f"row 2 of file:{tmp_path}/b.parquet: column 'text' is not valid UTF-8: caf\ufffd",
        f"id 'fine' is on 2 rows; only the first (row 1 of file:{tmp_path}/b.parquet) is used, not this one "
        f"(row 3 of file:{tmp_path}/b.parquet)"]
    assert json.loads(run.summary["statuses"]) == {"ok": 1, "decode_error": 1, "duplicate_id": 1}


def test_conf_file_that_is_not_utf8_is_a_config_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfebatch_size: 3\n")
    with pytest.raises(config.ConfigError, match="--conf"):
        config.load(embed_images.Config, str(tmp_path / "bad.yaml"),
                    [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"], {})
