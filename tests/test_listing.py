"""Listing inputs: a path is read as named, every file listed is a row or a counted skip, any name survives.

Real files with hostile names, a real Spark session, the jobs through `jobs.cli.main`.
"""
from __future__ import annotations

import io
import json
import logging
import os
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, features

from jobs import cli
from jobs.core import paths
from jobs.tables import contracts, inputs
from tests.conftest import common_args, jpeg_bytes
from udfs import files
from udfs.report_thumbs import thumbnail_of
from udfs.status import RowError

GLOB_NAMES = ["data [v2]", "a{b,c}", "x*y", "q?", "back\\slash"]  # each with a sibling its glob would match
DECOYS = ["data 2", "ab", "xzy", "qz", "backslash"]


class _Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_cli(job: str, work: Path, *args: str) -> tuple[int, dict, list[str]]:
    """(exit code, the runs-table summary, what jobs.tables.listing logged) of one run under `work`."""
    logged, logger = _Logged(), logging.getLogger("jobs.tables.listing")
    logger.addHandler(logged)
    try:
        code = cli.main([job, *args, *common_args(work)])
    finally:
        logger.removeHandler(logged)
    summaries = [pq.read_table(f).to_pylist()[0] for f in (work / "runs").glob("run-*.parquet")]
    return code, (summaries or [{}])[-1], logged.messages


def image(name: bytes, data: bytes, folder: bytes) -> None:
    with open(os.path.join(folder, name), "wb") as fh:
        fh.write(data)


def encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(buf, fmt)
    return buf.getvalue()


NFC, NFD = unicodedata.normalize("NFC", "é.jpg"), unicodedata.normalize("NFD", "é.jpg")
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # the container of Thumbs.db
# file name (bytes) → (its id, its status); every one holds the same JPEG unless it is not_an_image
NAMES = {
    b"plain.jpg": ("plain.jpg", "ok"),
    b"caf\xe9.jpg": ("caf\\xe9.jpg", "ok"),       # latin-1 byte: not UTF-8
    b"caf\\xe9.jpg": ("caf\\\\xe9.jpg", "ok"),    # a real backslash: its own spelling, not the above
    b"a b.jpg": ("a b.jpg", "ok"),
    b"100%20.jpg": ("100%20.jpg", "ok"),
    b"#1.jpg": ("#1.jpg", "ok"),
    b"12:30.jpg": ("12:30.jpg", "ok"),
    b"new\nline.jpg": ("new\nline.jpg", "ok"),
    b"-lead.jpg": ("-lead.jpg", "ok"),
    NFC.encode(): (NFC, "ok"),
    NFD.encode(): (NFD, "ok"),
    b"x" * 251 + b".jpg": ("x" * 251 + ".jpg", "ok"),  # 255 bytes, the longest name ext4 allows
    b"[v1] {a,b} *?.jpg": ("[v1] {a,b} *?.jpg", "ok"),
    b"x.jfif": ("x.jfif", "ok"),
    b"x.jpe": ("x.jpe", "ok"),
    b"X.JPG": ("X.JPG", "ok"),
    b"no_extension": ("no_extension", "ok"),
    b"trailing.jpg ": ("trailing.jpg ", "ok"),
    b"photo.txt": ("photo.txt", "ok"),             # the content decides, not the name
    b"README.txt": ("README.txt", "not_an_image"),
    b"Thumbs.db": ("Thumbs.db", "not_an_image"),
    b"sub/inner.jpg": ("sub/inner.jpg", "ok"),
}
OTHER_FORMATS = {b"x.jp2": ("JPEG2000", "jpg_2000"), b"x.avif": ("AVIF", "avif")}


@pytest.fixture(scope="module")
def names_run(spark, tmp_path_factory):
    """embed-images over `shoot [2024]` (beside `shoot 2`, which its glob reading matched) into `out [v2]`."""
    work = tmp_path_factory.mktemp("names")
    folder = os.fsencode(work / "shoot [2024]")
    os.makedirs(folder + b"/sub")
    os.makedirs(folder + b"/.thumbnails")
    (work / "shoot 2").mkdir()
    (work / "shoot 2" / "decoy.jpg").write_bytes(jpeg_bytes())
    photo = jpeg_bytes((80, 60), (200, 30, 30))
    expected = {}
    for name, (item_id, status) in NAMES.items():
        image(name, b"# notes\n" if name == b"README.txt" else OLE2 if name == b"Thumbs.db" else photo, folder)
        expected[item_id] = status
    for name, (fmt, feature) in OTHER_FORMATS.items():  # embedded where this Pillow decodes them
        if features.check(feature):
            image(name, encoded(fmt), folder)
            expected[name.decode()] = "ok"
    image(b".DS_Store", b"\0\0\0\1Bud1", folder)
    image(b".thumbnails/t.jpg", photo, folder)
    code, summary, logged = run_cli("embed-images", work, "--input", os.fsdecode(folder),
                                    "--output", str(work / "out [v2]"))
    rows = spark.read.parquet(paths.escape_glob(str(work / "out [v2]"))).toPandas() if code == 0 else None
    return code, rows, summary, logged, expected, os.fsdecode(folder)


def test_every_hostile_name_is_one_row_with_a_unique_valid_id(names_run):
    code, rows, summary, _, expected, _ = names_run
    assert code == 0
    assert sorted(rows.id) == sorted(expected)
    assert rows.id.is_unique and "decoy.jpg" not in set(rows.id)
    assert dict(zip(rows.id, rows.status)) == expected
    assert (summary["rows_in"], summary["rows_out"]) == (len(expected), len(expected))
    assert json.loads(summary["statuses"]) == {"ok": len(expected) - 2, "not_an_image": 2}


def test_a_name_that_is_not_utf8_embeds_like_its_twin(names_run):
    _, rows, _, _, _, folder = names_run
    by_id = rows.set_index("id")
    latin1 = by_id.loc["caf\\xe9.jpg"]
    assert latin1.source == f"file:{folder}/caf\\xe9.jpg"
    assert latin1.content_hash == by_id.loc["plain.jpg"].content_hash
    assert np.allclose(latin1.embedding, by_id.loc["plain.jpg"].embedding, atol=1e-5)
    assert np.allclose(by_id.loc[NFD].embedding, by_id.loc[NFC].embedding, atol=1e-5)


def test_every_source_opens_its_own_file_and_the_report_thumbnails_it(names_run):
    _, rows, _, _, _, folder = names_run
    for name in [*NAMES, *(n for n in OTHER_FORMATS if os.path.exists(os.path.join(os.fsencode(folder), n)))]:
        (source,) = rows[rows.id == files.spelled(name)].source
        with open(os.path.join(os.fsencode(folder), name), "rb") as fh:
            assert files.read_file(files.source_uri(source), 10**6) == fh.read(), name
    assert thumbnail_of(f"file:{folder}/caf\\xe9.jpg", 32).startswith("data:image/")


def test_files_that_are_no_image_are_rows_that_say_so(names_run):
    _, rows, _, _, _, _ = names_run
    for item_id in ("README.txt", "Thumbs.db"):
        row = rows.set_index("id").loc[item_id]
        assert row.embedding is None
        assert row.error == ("not an image: no image format recognised in its first bytes, and its name "
                             "has no image extension")


def test_hidden_entries_are_counted_and_logged(names_run):
    _, _, summary, logged, _, folder = names_run
    assert json.loads(summary["stats"])["skipped_hidden"] == 2  # .DS_Store and the .thumbnails folder
    assert f"{folder}: 2 entries not read, hidden (the name starts with `.`): .DS_Store, .thumbnails" in logged


def test_extensions_key_reads_only_those_and_counts_the_rest(spark, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.JPEG", "c.jfif", "d", "e.txt"):
        (folder / name).write_bytes(jpeg_bytes())
    code, summary, logged = run_cli("embed-images", tmp_path, "--input", str(folder),
                                    "--output", str(tmp_path / "out"), "--set", "extensions=[jpg, .jpeg]")
    assert code == 0
    assert sorted(r.id for r in spark.read.parquet(str(tmp_path / "out")).collect()) == ["a.jpg", "b.JPEG"]
    assert (summary["rows_in"], json.loads(summary["stats"])["skipped_extension"]) == (2, 3)
    assert logged == [f"{folder}: 3 entries not read, not one of the key `extensions`: c.jfif, d, e.txt"]


def test_an_empty_extension_is_a_config_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code = cli.main(["embed-images", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                     "--set", "extensions=[jpg, '']", *common_args(tmp_path)])
    assert code == 2 and "key 'extensions'" in capsys.readouterr().err


def test_text_dir_reads_every_file_in_a_folder_with_glob_characters(spark, tmp_path):
    docs = os.fsencode(tmp_path / "notes {v1}")
    os.makedirs(docs)
    (tmp_path / "notes v1").mkdir()  # what `{v1}` would match as a glob
    (tmp_path / "notes v1" / "decoy.txt").write_text("wrong folder")
    texts = {b"a.txt": b"rivers flow to the sea", b"b.md": b"# mountains and valleys", b"C.TXT": b"the sea",
             b"NOEXT": b"rain falls on the hills", b"caf\xe9.txt": b"coffee and milk", b"photo.jpg": jpeg_bytes(),
             b".hidden.txt": b"hidden"}
    for name, data in texts.items():
        image(name, data, docs)
    code, summary, _ = run_cli("embed-texts", tmp_path, "--input", os.fsdecode(docs),
                               "--output", str(tmp_path / "out {v1}"), "--model", "word-vectors")
    assert code == 0
    rows = spark.read.parquet(paths.escape_glob(str(tmp_path / "out {v1}"))).toPandas()
    assert dict(zip(rows.id, rows.status)) == {"a.txt": "ok", "b.md": "ok", "C.TXT": "ok", "NOEXT": "ok",
                                               "caf\\xe9.txt": "ok", "photo.jpg": "decode_error"}
    assert json.loads(summary["stats"])["skipped_hidden"] == 1


# ---- paths with glob characters, read by Spark -----------------------------------------------------

@pytest.fixture(scope="module")
def glob_named_tables(tmp_path_factory):
    """A Parquet file and a CSV in each folder of GLOB_NAMES, decoys beside them, and a `12:30` folder
    (Hadoop's glob fails on a `:` in a name it meets)."""
    import pyarrow as pa

    base = tmp_path_factory.mktemp("globs")
    for name in GLOB_NAMES + DECOYS + ["12:30"]:
        (base / name).mkdir()
        pq.write_table(pa.table({"id": [name], "text": ["a sentence"]}), base / name / "t.parquet")
        (base / name / "t.csv").write_text(f"id,text\n\"{name}\",a sentence\n")
    return base


@pytest.mark.parametrize("name", GLOB_NAMES)
def test_spark_reads_a_path_with_glob_characters_as_named(spark, glob_named_tables, name):
    for fmt in ("parquet", "csv"):
        location = str(glob_named_tables / name / f"t.{fmt}")
        paths.check_input_exists("input", location)
        assert inputs.detect_format(location, "auto") == fmt
        assert [r.id for r in inputs.read(spark, location, fmt, inputs.ReadOptions()).collect()] == [name]


def test_a_glob_reads_its_matches_and_escapes_name_literal_characters(spark, glob_named_tables):
    base = str(glob_named_tables)
    read = contracts.read_table(spark, f"{base}/{{data \\[v2\\],q?}}/t.parquet")
    assert sorted(r.id for r in read.collect()) == ["data [v2]", "q?", "qz"]
    read = inputs.read(spark, f"{base}/[^dqx]*/t.csv", "csv", inputs.ReadOptions())
    assert sorted(r.id for r in read.collect()) == ["12:30", "ab", "a{b,c}", "back\\slash", "backslash"]


def test_an_embed_texts_run_on_a_csv_in_a_bracketed_folder(spark, glob_named_tables, tmp_path):
    code, summary, _ = run_cli("embed-texts", tmp_path, "--input", str(glob_named_tables / "data [v2]" / "t.csv"),
                               "--output", str(tmp_path / "x*y"), "--model", "word-vectors")
    assert code == 0 and summary["rows_in"] == 1
    assert [r.id for r in spark.read.parquet(paths.escape_glob(str(tmp_path / "x*y"))).collect()] == ["data [v2]"]


def test_a_glob_that_could_mean_an_existing_folder_is_refused(tmp_path, capsys):
    (tmp_path / "shoot [2024]").mkdir()
    (tmp_path / "shoot 2").mkdir()
    (tmp_path / "shoot 2" / "a.jpg").write_bytes(jpeg_bytes())
    code = cli.main(["embed-images", "--input", f"{tmp_path}/shoot [2024]/*.jpg", "--output",
                     str(tmp_path / "out"), *common_args(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"'{tmp_path}/shoot [2024]' exists: to read under it, escape its metacharacters: " \
           f"'{tmp_path}/shoot \\[2024\\]/*.jpg'" in err


@pytest.mark.parametrize("job, args, message", [
    ("embed-images", ["--input", "{d}/nothing*"], "no path is named '{d}/nothing*', and as a glob it matches no file"),
    ("search", ["--queries", "{d}/q", "--index", "{d}/ind*"],
     "key 'index': '{d}/ind*' does not exist (a glob is not accepted here: name one file or folder)"),
])
def test_globs_that_cannot_be_read_are_refused_before_spark(tmp_path, capsys, job, args, message):
    (tmp_path / "q").mkdir()
    (tmp_path / "index").mkdir()  # a glob `ind*` would match it, but search reads its index with Python
    code = cli.main([job, *[a.format(d=tmp_path) for a in args], "--output", str(tmp_path / "out"),
                     *common_args(tmp_path)])
    assert code == 2 and message.format(d=tmp_path) in capsys.readouterr().err


def test_hadoop_glob_syntax_matches_like_hadoop(tmp_path):
    for name in ("a1", "a2", "b1", "[x]", "c,d", "e"):
        (tmp_path / name).mkdir()
    cases = {"{a,b}1": ["a1", "b1"], "{a{1,2},e}": ["a1", "a2", "e"], "[^a]?": ["b1"], "[!ab]*": ["[x]", "c,d", "e"],
             "\\[x\\]": ["[x]"], "[x]": [], "c,d": ["c,d"], "a[0-1]": ["a1"], "\\*": []}
    for pattern, names in cases.items():
        assert [os.path.basename(p) for p in paths.expand_glob(f"{tmp_path}/{pattern}")] == names, pattern


def test_local_format_by_content_when_no_name_tells(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "docs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"blob{i}").write_bytes(jpeg_bytes())
        (tmp_path / "docs" / f"note{i}").write_text("plain words " * (i + 1))
    assert inputs.detect_format(str(tmp_path / "imgs"), "auto") == "images"
    assert inputs.detect_format(str(tmp_path / "docs"), "auto") == "text-dir"
    assert inputs.detect_format(str(tmp_path / "imgs" / "blob0"), "auto") == "images"


def test_file_uris_carry_any_bytes_and_open_them(tmp_path):
    folder = os.fsencode(tmp_path)
    for name in (b"caf\xe9 #1.jpg", b"100%20.jpg"):
        image(name, b"bytes of " + name, folder)
        uri = files.file_uri(os.path.join(folder, name))
        assert uri.isascii() and files.read_file(uri, 100) == b"bytes of " + name
    assert files.read_file(f"file:{tmp_path}/100%20.jpg", 100) == b"bytes of 100%20.jpg"  # Hadoop's form: as written
    with pytest.raises(RowError, match="names host 'elsewhere'"):
        files.read_file("file://elsewhere/x.jpg", 100)
    assert (files.spelled(b"caf\xe9"), files.spelled(b"caf\\xe9")) == ("caf\\xe9", "caf\\\\xe9")
