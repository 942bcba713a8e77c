"""Hostile text inputs through the real jobs: bad bytes, broken quotes, JSON documents, missing and repeated
ids, and the later jobs that read ids (assign-labels, build-index, search, evaluate, examples).

One embed-texts run over a CSV holding every CSV problem at once is shared by the id tests after it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter

import pandas as pd
import pytest

from jobs import cli
from jobs.tables import labelled
from jobs.core.config import ConfigError
from tests.conftest import common_args
from tests.test_hostile_inputs import Warnings, run_job

# line → (id, status): every line of a UTF-8 CSV with a BOM and CRLF line endings
CSV_LINES = [
    (b"\xef\xbb\xbfid,text", None, None),            # 1 the BOM is not part of the column name `id`
    (b"plain,Rivers flow to the sea", "plain", "ok"),  # 2
    (b"latin1,caf\xe9 au lait", "latin1", "decode_error"),  # 3 cp1252 bytes, read as UTF-8
    (b'multiline,"two', "multiline", "ok"),          # 4 one row over lines 4-5
    (b'lines"', None, None),                         # 5
    (b'mid,a "quoted" word', "mid", "ok"),           # 6 a quote inside an unquoted field is text
    (b'stray,ends with a quote"', "stray", "ok"),    # 7 so is one at its end
    (b'opens,"runs on', "opens", "malformed"),       # 8 closed by the stray quote of line 10
    (b"r1,first", "r1", "ok"),                       # 9
    (b'r2,second"', "r2", "ok"),                     # 10
    (b'after,"closed" then', "after", "malformed"),  # 11 text after a closing quote
    (b"1,one", "1", "ok"),                           # 12 the ids 1,2,2,3,3,3
    (b"2,two", "2", "ok"),
    (b"2,two again", "2", "duplicate_id"),
    (b"3,three", "3", "ok"),
    (b"3,three again", "3", "duplicate_id"),
    (b"3,three once more", "3", "duplicate_id"),
    (b",no id", "", "missing_id"),                   # 18
    (b'"  ",blank id', "  ", "missing_id"),          # 19
    (b"long,too,many,fields", "long", "malformed"),  # 20
    (b'open2,"runs into the next', "open2", "malformed"),  # 21 closed by line 22's opening quote
    (b'quoted,"Commas, inside quotes"', "quoted", "ok"),   # 22
    (b'last,"never closed', "last", "malformed"),    # 23 runs to the end of the file
]
STATUSES = {"ok": 10, "decode_error": 1, "malformed": 5, "duplicate_id": 3, "missing_id": 2}


def main(*args: str) -> tuple[int, str]:
    """cli.main(args) → (exit code, what the jobs logged at WARNING and above)."""
    caught = Warnings()
    loggers = [logging.getLogger(name) for name in ("jobs", "sparkamp")]
    for logger in loggers:
        logger.addHandler(caught)
    try:
        code = cli.main(list(args))
    finally:
        for logger in loggers:
            logger.removeHandler(caught)
    return code, "\n".join(caught.messages)


@pytest.fixture(scope="module")
def csv_run(spark, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-csv")
    source = work / "news.csv"
    source.write_bytes(b"\r\n".join(line for line, _, _ in CSV_LINES) + b"\r\n")
    (work / "names.yaml").write_text("labels: [nature, numbers]\n")
    return run_job(spark, work, "embed-texts", source), work


def test_every_csv_record_is_one_row_with_its_status(csv_run):
    run, _ = csv_run
    assert run.code == 0
    expected = sorted((i, s) for _, i, s in CSV_LINES if s)
    assert sorted(zip(run.rows.id, run.rows.status)) == expected
    assert (run.summary["rows_in"], run.summary["rows_out"]) == (21, 21)
    assert json.loads(run.summary["statuses"]) == STATUSES
    ok = run.rows[run.rows.status == "ok"]
    assert ok.id.is_unique and ok.error.isna().all() and ok.embedding.notna().all()
    assert run.rows[run.rows.status != "ok"].embedding.isna().all()
    hashes = ok.set_index("id").content_hash
    for item, text in (("mid", 'a "quoted" word'), ("multiline", "two\r\nlines"), ("r2", 'second"'),
                       ("quoted", "Commas, inside quotes")):
        assert hashes[item] == hashlib.sha256(text.encode()).hexdigest(), item


def test_csv_errors_name_the_file_the_line_and_the_problem(csv_run):
    run, _ = csv_run
    at = f"of file:{run.source}"
    errors = {(r.id, r.status): r.error for r in run.rows.itertuples() if r.status != "duplicate_id"}
    assert errors[("latin1", "decode_error")] == \
        f"line 3 {at}: column 'text' is not valid UTF-8: byte(s) e9 at character 3 of 'caf\ufffd au lait'"
    assert errors[("opens", "malformed")] == (
        f"line 8 {at}: a quoted field runs over lines 8-10, which each read as a record of their own "
        "(an unclosed quote?): 'opens,\"runs on'")
    assert errors[("after", "malformed")] == f"line 11 {at}: ',' expected after '\"': 'after,\"closed\" then'"
    assert errors[("open2", "malformed")] == (
        f"line 21 {at}: a quote opened on this line does not close properly (',' expected after '\"' on "
        "line 22): 'open2,\"runs into the next'")
    assert errors[("last", "malformed")] == (
        f"line 23 {at}: a quote opened on this line is never closed (it runs to the end of the file): "
        "'last,\"never closed'")
    assert errors[("long", "malformed")] == f"line 20 {at}: 4 fields, the header has 2: 'long,too,many,fields'"
    assert errors[("", "missing_id")] == f"the id (id) is empty at line 18 {at}"
    assert errors[("  ", "missing_id")] == f"the id (id) is blank at line 19 {at}"
    repeats = sorted(run.rows[run.rows.status == "duplicate_id"].error)
    assert repeats == [
        f"id '2' is on 2 rows; only the first (line 13 {at}) is used, not this one (line 14 {at})",
        f"id '3' is on 3 rows; only the first (line 15 {at}) is used, not this one (line 16 {at})",
        f"id '3' is on 3 rows; only the first (line 15 {at}) is used, not this one (line 17 {at})"]
    unread, undecodable = run.warnings
    assert unread.startswith(f"{run.source}: 5 records cannot be read as they are") and "line 8" in unread
    assert "1 records hold bytes that are not valid UTF-8" in undecodable


def test_assign_labels_counts_the_rows_it_writes_not_distinct_ids(csv_run, spark):
    """The issue: 6 items with ids 1,2,2,3,3,3 stopped with "6 items in but 3 labelled"."""
    run, work = csv_run
    out = work / "labels"
    code, logged = main("assign-labels", "--embeddings", str(work / "out"), "--labels", str(work / "names.yaml"),
                        "--output", str(out), *common_args(work / "label-run"))
    assert code == 0, logged
    labels = spark.read.parquet(str(out)).toPandas()
    assert sorted(zip(labels.id, labels.status)) == sorted((i, s) for _, i, s in CSV_LINES if s)
    assert labels[labels.status == "ok"].label.notna().all()
    assert labels[labels.status != "ok"].label.isna().all()


def test_a_table_whose_ok_rows_repeat_or_lack_ids_is_refused(csv_run, tmp_path):
    """A table made elsewhere (or by an older version) with ok rows sharing an id: refused, ids listed."""
    _, work = csv_run
    rows = pd.read_parquet(work / "out")
    vector = rows[rows.status == "ok"].embedding.iloc[0]
    rows["embedding"] = [vector] * len(rows)
    rows["status"], rows["error"] = "ok", None
    rows.to_parquet(tmp_path / "old.parquet")
    code, logged = main("assign-labels", "--embeddings", str(tmp_path / "old.parquet"), "--labels",
                        str(work / "names.yaml"), "--output", str(tmp_path / "o"), *common_args(tmp_path))
    assert code == 2
    assert (f"key 'embeddings': the ok rows of '{tmp_path / 'old.parquet'}' must each have their own id, but "
            "'3' on 3 row(s), '2' on 2 row(s), '' on 1 row(s), '  ' on 1 row(s);") in logged


def test_search_query_texts_with_bad_bytes_crlf_and_repeats(csv_run, spark):
    """A query file in cp1252 killed the driver with UnicodeDecodeError; now its bad line is a status row
    of the neighbours table, counted by status, and `encoding` reads it."""
    _, work = csv_run
    index = str(work / "index")
    assert cli.main(["build-index", "--embeddings", str(work / "out"), "--output", index,
                     *common_args(work / "index-run")]) == 0
    queries = work / "q.txt"
    queries.write_bytes(b"rivers and the sea\r\ncaf\xe9 au lait\r\nrivers and the sea\r\n\r\nnumbers: one, two\r\n")
    for encoding, asked in (("utf-8", {"rivers and the sea", "numbers: one, two"}),
                            ("cp1252", {"rivers and the sea", "café au lait", "numbers: one, two"})):
        out, runs = work / f"nb-{encoding}", work / f"search-{encoding}"
        assert cli.main(["search", "--index", index, "--query-texts", str(queries), "--output", str(out),
                         "--k", "1", "--set", f"encoding={encoding}", *common_args(runs)]) == 0
        neighbours = spark.read.parquet(str(out)).toPandas()
        answered = neighbours[neighbours.status == "ok"]
        assert set(answered.query_id) == asked
        failed = neighbours[neighbours.status != "ok"]
        assert failed["rank"].isna().all() and failed.neighbor_id.isna().all()
        expected = {"ok": len(asked), "duplicate_id": 1, **({"decode_error": 1} if encoding == "utf-8" else {})}
        assert dict(Counter(failed.status)) == {k: v for k, v in expected.items() if k != "ok"}
        (summary,) = [pd.read_parquet(f).iloc[0] for f in (runs / "runs").glob("run-*.parquet")]
        assert summary.rows_in == 4 and json.loads(summary.statuses) == expected
    assert answered.set_index("query_id").neighbor_id["rivers and the sea"] == "plain"


def test_utf16_tsv_with_encoding_and_delimiter(spark, tmp_path):
    data = "id\ttext\nu1\tcafé au lait\n".encode("utf-16") + "u2\t".encode("utf-16-le") + b"\x00\xd8" + \
        "x\n".encode("utf-16-le")  # u2's text holds a lone surrogate: not valid UTF-16
    (tmp_path / "t.tsv").write_bytes(data)
    run = run_job(spark, tmp_path, "embed-texts", tmp_path / "t.tsv", "--set", "input_format=csv",
                  "--set", "encoding=utf-16", "--set", "delimiter=tab")
    assert run.code == 0
    rows = run.rows.set_index("id")
    assert rows.status.to_dict() == {"u1": "ok", "u2": "decode_error"}
    assert rows.content_hash["u1"] == hashlib.sha256("café au lait".encode()).hexdigest()
    assert rows.error["u2"] == (f"line 3 of file:{tmp_path}/t.tsv: column 'text' is not valid UTF-16: "
                                "byte(s) 00 d8 at character 0 of '\ufffdx'")


def test_a_pretty_printed_json_array_is_read_as_rows(spark, tmp_path):
    """It was refused with "its columns are _corrupt_record"."""
    doc = [{"id": "a", "text": "Rivers flow to the sea"}, {"id": "b", "text": "Mountains rise"},
           {"id": None, "text": "no id"}, 42]
    (tmp_path / "docs.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(doc, indent=2).encode())
    run = run_job(spark, tmp_path, "embed-texts", tmp_path / "docs.json")
    assert run.code == 0
    assert sorted(zip(run.rows.id.fillna("-"), run.rows.status)) == [
        ("-", "malformed"), ("-", "missing_id"), ("a", "ok"), ("b", "ok")]
    assert sorted(run.rows.error.dropna()) == [
        f"element 4 of file:{tmp_path}/docs.json: a number, not a JSON object: '42'",
        f"the id (id) is null at element 3 of file:{tmp_path}/docs.json"]


def test_gold_labels_repeated_are_counted_once(spark, tmp_path):
    """The issue: an id listed three times was counted three times (accuracy 0.625 instead of 0.833)."""
    predictions = pd.DataFrame({"id": list("abcdef"), "label": list("xxyyxy"), "score": 0.9, "rank": 1,
                                "method": "m", "status": "ok", "error": None})
    predictions["rank"] = predictions["rank"].astype("Int32")
    predictions.to_parquet(tmp_path / "labels.parquet")
    (tmp_path / "gold.csv").write_text("id\tlabel\na\tx\nb\tx\nc\ty\nd\ty\ne\tx\nf\tx\nf\tx\nf\tx\n")
    code, logged = main("evaluate", "--labels-table", str(tmp_path / "labels.parquet"), "--gold",
                        str(tmp_path / "gold.csv"), "--set", "delimiter=\\t",
                        "--output", str(tmp_path / "m"), *common_args(tmp_path))
    assert code == 0, logged
    metrics = pd.read_parquet(tmp_path / "m")
    assert metrics.query("metric == 'accuracy'").value.item() == pytest.approx(5 / 6)
    assert f"{tmp_path / 'gold.csv'}: 2 gold label row(s) repeat an earlier (id, label) pair" in logged
    (summary,) = [pd.read_parquet(f).iloc[0] for f in (tmp_path / "runs").glob("run-*.parquet")]
    assert json.loads(summary.stats)["gold_rows_repeated"] == 2

    (tmp_path / "bad.csv").write_text("id,label\na,x\n,y\nc,\nd,y\n")
    code, logged = main("evaluate", "--labels-table", str(tmp_path / "labels.parquet"), "--gold",
                        str(tmp_path / "bad.csv"), "--output", str(tmp_path / "m2"), *common_args(tmp_path))
    assert code == 2
    at = f"of file:{tmp_path}/bad.csv"
    assert (f"key 'gold': 2 gold label row(s) of '{tmp_path / 'bad.csv'}' cannot be used: id 'c' has no "
            f"label at line 4 {at}; no id at line 3 {at}") in logged


def test_examples_with_an_empty_label_are_refused_not_a_traceback(csv_run, tmp_path):
    _, work = csv_run
    (tmp_path / "ex.csv").write_text("text;label\nRivers and lakes;nature\nOne two three;\nSeven;numbers\n")
    code, logged = main("assign-labels", "--embeddings", str(work / "out"), "--labels", str(work / "names.yaml"),
                        "--method", "centroid", "--examples", str(tmp_path / "ex.csv"), "--set", "delimiter=;",
                        "--output", str(tmp_path / "o"), *common_args(tmp_path))
    assert code == 2
    assert (f"key 'examples': 1 example row(s) of '{tmp_path / 'ex.csv'}' cannot be used: text 'One two "
            f"three' has no label at line 3 of file:{tmp_path}/ex.csv") in logged


def test_labelled_pairs_conflicts_and_repeats(spark):
    pairs = spark.createDataFrame([("a", "x"), ("a", "y"), ("b", "x"), ("b", "x"), ("c", "z")],
                                  "id string, label string")
    with pytest.raises(ConfigError) as err:
        labelled.checked_pairs(pairs, "id", "gold label", "gold", "g.csv")
    assert str(err.value) == ("key 'gold': 1 id(s) of 'g.csv' have more than one gold label: id 'a' has labels "
                              "'x', 'y'; keep one label per id")
    distinct, repeated = labelled.checked_pairs(pairs.filter("label != 'y'"), "id", "gold label", "gold", "g.csv")
    assert sorted(map(tuple, distinct.collect())) == [("a", "x"), ("b", "x"), ("c", "z")] and repeated == 1
    with pytest.raises(ConfigError, match=r"key 'examples': ids listed more than once in 'e\.parquet': 'b'"):
        labelled.checked_pairs(pairs.filter("label != 'y'"), "id", "example", "examples", "e.parquet",
                               repeats=False)


def test_an_incremental_rerun_reuses_ok_rows_once_and_remakes_the_others(csv_run):
    """Repeated ids must not multiply rows when the previous output is joined by id."""
    run, work = csv_run
    before = pd.read_parquet(work / "out")
    assert cli.main(["embed-texts", "--input", str(run.source), "--output", str(work / "out"),
                     "--set", "incremental=true", *common_args(work / "incremental")]) == 0
    after = pd.read_parquet(work / "out")
    assert sorted(zip(after.id, after.status)) == sorted(zip(before.id, before.status))
    ok_before, ok_after = (t[t.status == "ok"].set_index("id").sort_index() for t in (before, after))
    assert ok_after.content_hash.equals(ok_before.content_hash)
    assert all((a == b).all() for a, b in zip(ok_after.embedding, ok_before.embedding))
    (summary,) = [pd.read_parquet(f).iloc[0] for f in (work / "incremental" / "runs").glob("run-*.parquet")]
    stats = json.loads(summary.stats)
    assert (stats["incremental_unchanged"], stats["incremental_rejected"], stats["embedded"]) == (10, 11, 11)
