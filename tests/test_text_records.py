"""Reading text files record by record, without Spark: encodings, BOMs, CSV quotes, JSON shapes, query
lines, gold files and the keys that name them. Every expected value is written out."""
from __future__ import annotations

import io
import json

import pytest

from jobs import embed_texts
from jobs.core import config
from jobs.tables import labelled
from jobs.embedding.queries import query_lines
from jobs.core.config import ConfigError
from udfs import decoding, record_files, texts
from udfs.records import TextFormat
from udfs.status import DECODE_ERROR, RowError


def read(data: bytes, kind: str = "csv", encoding: str = "utf-8", delimiter: str = ",") -> list[tuple]:
    """(line, fields, undecodable columns, status, error) of each record of `data`."""
    fmt = TextFormat(kind, encoding, delimiter)
    return [(r.line, r.fields, sorted(r.undecodable), r.status, r.error)
            for r in record_files.records(decoding.marked_lines(io.BytesIO(data), encoding), fmt)]


def test_an_unclosed_quote_swallows_no_rows():
    """The issue's file: 5 rows, one unclosed quote; Spark read 2 rows, rows 3-5 inside row 2's text."""
    got = read(b'id,text\n1,a\n2,"b\n3,c\n4,d\n5,e\n')
    assert [(line, fields["id"], status) for line, fields, _, status, _ in got] == [
        (2, "1", None), (3, "2", "malformed"), (4, "3", None), (5, "4", None), (6, "5", None)]
    assert got[1][4] == "a quote opened on this line is never closed (it runs to the end of the file): '2,\"b'"
    assert got[1][1] == {"id": "2", "text": "b"}


def test_csv_quote_siblings():
    data = (b'\xef\xbb\xbfid,text\r\n'            # 1 a UTF-8 BOM: not part of the first column's name
            b'multi,"two\r\nlines"\r\n'            # 2-3 a quoted field over two lines: one record
            b'mid,a "quoted" word\r\n'             # 4 a quote inside an unquoted field is text
            b'stray,12"\r\n'                       # 5 so is one at its end
            b'\r\n'                                # 6 blank: no record
            b'opens,"runs on\r\nr1,first\r\nr2,second"\r\n'  # 7-9 closed by a stray quote two lines on
            b'after,"closed" then\r\n'             # 10 text after a closing quote
            b'letter,"Dear Sir,\r\nThank you, and\r\nbye, friend"\r\n'  # 11-13 prose: one record
            b'open2,"runs into\r\nq,"a, b"\r\n')   # 14-15 closed by the next field's opening quote
    got = read(data)
    assert [(line, fields, status) for line, fields, _, status, _ in got] == [
        (2, {"id": "multi", "text": "two\r\nlines"}, None),
        (4, {"id": "mid", "text": 'a "quoted" word'}, None),
        (5, {"id": "stray", "text": '12"'}, None),
        (7, {"id": "opens", "text": "runs on"}, "malformed"),
        (8, {"id": "r1", "text": "first"}, None),
        (9, {"id": "r2", "text": 'second"'}, None),
        (10, {"id": "after", "text": "closed then"}, "malformed"),
        (11, {"id": "letter", "text": "Dear Sir,\r\nThank you, and\r\nbye, friend"}, None),
        (14, {"id": "open2", "text": "runs into"}, "malformed"),
        (15, {"id": "q", "text": "a, b"}, None)]
    errors = {fields["id"]: error for _, fields, _, _, error in got if error}
    assert errors == {
        "opens": "a quoted field runs over lines 7-9, which each read as a record of their own (an unclosed "
                 "quote?): 'opens,\"runs on'",
        "after": "',' expected after '\"': 'after,\"closed\" then'",
        "open2": "a quote opened on this line does not close properly (',' expected after '\"' on line 15): "
                 "'open2,\"runs into'"}


def test_csv_fields_header_and_delimiter():
    got = read(b'id\ttext\ttext\t\n1\tcaf\xe9, au lait\tx\t\n2\tshort\n', delimiter="\t")
    assert got == [
        (2, {"id": "1", "text1": "caf\ufffd, au lait", "text2": "x", "_c3": ""}, ["text1"], None, None),
        (3, {"id": "2", "text1": "short", "text2": None, "_c3": None}, [], "malformed",
         "2 fields, the header has 4: '2\\tshort'")]
    assert read(b'id,"te\nxt\n1,a\n')[0][3:] == (
        "malformed", "the header line cannot be read (a quote opened on this line is never closed (it runs "
        "to the end of the file)): 'id,\"te'")
    assert read(b"") == [] and read(b"id,text\n") == []


def test_utf16_with_its_bom_and_without_the_key():
    good = "id\ttext\nu1\tcafé au lait\n".encode("utf-16")
    bad_line = "u2\t".encode("utf-16-le") + b"\x00\xd8" + "x\n".encode("utf-16-le")  # a lone surrogate
    got = read(good + bad_line, encoding="utf-16", delimiter="\t")
    assert [(line, fields, bad) for line, fields, bad, _, _ in got] == [
        (2, {"id": "u1", "text": "café au lait"}, []), (3, {"id": "u2", "text": "\ufffdx"}, ["text"])]
    assert decoding.undecodable("\udc00\udcd8x", "utf-16") == \
        "not valid UTF-16: byte(s) 00 d8 at character 0 of '\ufffdx'"
    assert read(good) == [(1, {}, [], DECODE_ERROR, "not valid UTF-8; it starts with a UTF-16 byte order "
                                                   "mark: set encoding to utf-16; nothing in the file was read")]


def test_json_lines_and_json_documents():
    array = b'\xef\xbb\xbf[\n  {"id": 1, "text": "a"},\n  {"id": null, "n": 2.5, "tags": ["x"]},\n  42\n]\n'
    assert read(array, "jsonl") == [
        (1, {"id": "1", "text": "a"}, [], None, None),
        (2, {"id": None, "n": "2.5", "tags": '["x"]'}, [], None, None),
        (3, {}, [], "malformed", "a number, not a JSON object: '42'")]
    assert read(b'{\n "id": "one",\n "text": "pretty"\n}\n', "jsonl") == [
        (1, {"id": "one", "text": "pretty"}, [], None, None)]
    got = read(b'{"id": "a", "text": "caf\xe9"}\n\n"just a string"\n[1]\n{"id": "cut\n', "jsonl")
    assert got == [(1, {"id": "a", "text": "caf\ufffd"}, ["text"], None, None),
                   (3, {}, [], "malformed", "a string, not a JSON object: '\"just a string\"'"),
                   (4, {}, [], "malformed", "an array, not a JSON object: '[1]'"),
                   (5, {}, [], "malformed", "not JSON: Unterminated string starting at column 8: '{\"id\": \"cut'")]
    broken = read(b'[\n  {"id": 1,\n', "jsonl")  # neither one document nor JSON Lines: each line says so
    assert [status for *_, status, _ in broken] == ["malformed", "malformed"] and read(b"\n\n", "jsonl") == []


def test_decoding_one_rule():
    assert decoding.decode(b"\xef\xbb\xbfhello", "utf-8") == "hello"
    assert decoding.decode("\ufeffhé".encode("utf-16-le"), "utf-16-le") == "hé"
    assert decoding.decode("café".encode("cp1252"), "cp1252") == "café"
    with pytest.raises(RowError) as err:
        decoding.decode("café".encode("utf-16"), "utf-8")
    assert err.value.message == ("not valid UTF-8: byte(s) ff at offset 0 (invalid start byte); it starts "
                                 "with a UTF-16 byte order mark: set encoding to utf-16")
    assert texts.clean_text(b"\xef\xbb\xbfhello", 100) == ("hello", False)
    assert texts.clean_text("\ufeffhello", 100) == ("hello", False)
    assert texts.clean_text(b"caf\xe9", 100, "cp1252") == ("café", False)
    with pytest.raises(RowError, match=r"not valid UTF-8: byte\(s\) e9 at offset 3"):
        texts.clean_text(b"caf\xe9", 100)
    assert decoding.check_encoding("UTF8") == "utf-8"
    for wrong in ("klingon", "base64"):
        with pytest.raises(ValueError, match="is not a text encoding Python knows"):
            decoding.check_encoding(wrong)


@pytest.mark.parametrize("sets, message", [
    (["encoding=klingon"], "key 'encoding': 'klingon' is not a text encoding Python knows"),
    (["delimiter=;;"], "key 'delimiter': ';;' is not a delimiter"),
    (["delimiter=\""], "key 'delimiter': '\"' is not a delimiter"),
])
def test_bad_encoding_or_delimiter_is_a_config_error(tmp_path, sets, message):
    (tmp_path / "t.csv").write_text("id,text\n")
    with pytest.raises(ConfigError) as err:
        config.load(embed_texts.Config, sets=sets, flags={"input": str(tmp_path / "t.csv"),
                                                          "output": str(tmp_path / "o")})
    assert str(err.value).startswith(message)


def test_query_lines(tmp_path):
    queries = tmp_path / "q.txt"
    queries.write_bytes(b"\xef\xbb\xbfrivers\r\ncaf\xe9 au lait\r\n\r\n   \r\nrivers\r\n")
    where = f"line 2 of {queries}"
    assert query_lines(str(queries), "utf-8") == [
        ("rivers", str(queries), "rivers", None, None, 1, f"line 1 of {queries}"),
        ("caf\ufffd au lait", str(queries), None, DECODE_ERROR,
         f"{where}: not valid UTF-8: byte(s) e9 at character 3 of 'caf\ufffd au lait'", 2, where),
        ("rivers", str(queries), "rivers", None, None, 5, f"line 5 of {queries}")]
    (tmp_path / "cp.txt").write_bytes(b"caf\xe9 au lait\nrivers\n")
    assert [row[0] for row in query_lines(str(tmp_path / "cp.txt"), "cp1252")] == \
        ["café au lait", "rivers"]
    (tmp_path / "u16.txt").write_bytes("one\ntwo\n".encode("utf-16"))
    assert [row[0] for row in query_lines(str(tmp_path / "u16.txt"), "utf-16")] == ["one", "two"]
    with pytest.raises(ConfigError, match="set encoding to utf-16"):
        query_lines(str(tmp_path / "u16.txt"), "utf-8")


def test_json_gold_files(tmp_path):
    gold = tmp_path / "gold.json"
    gold.write_text('{"a": "x", "b": "y", "a": "x", "c": null, "d": {"nested": 1}, "7": 3}')
    rows = labelled.json_pairs(str(gold), "utf-8", "label", "gold")
    assert [(key, label, origin[3]) for key, label, origin in rows] == [
        ("a", "x", None), ("b", "y", None), ("a", "x", None), ("c", None, None), ("d", None, "malformed"),
        ("7", "3", None)]  # the repeated key is kept (json.loads would keep the last), to be counted once
    gold.write_text(json.dumps([{"id": "a", "label": "x"}, {"b": "y"}]))
    assert [row[:2] for row in labelled.json_pairs(str(gold), "utf-8", "label", "gold")] == [("a", "x"), ("b", "y")]
    gold.write_bytes('{"é": "x"}'.encode("cp1252"))
    with pytest.raises(ConfigError, match=r"key 'gold': .* is not valid UTF-8: byte\(s\) e9 at offset 2"):
        labelled.json_pairs(str(gold), "utf-8", "label", "gold")
    assert labelled.json_pairs(str(gold), "cp1252", "label", "gold")[0][:2] == ("é", "x")
    for text, found in (("[1, 2]", "an array of other values"), ('"x"', "a JSON str")):
        gold.write_text(text)
        with pytest.raises(ConfigError, match=f"it holds {found}"):
            labelled.json_pairs(str(gold), "utf-8", "label", "gold")
    gold.write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON: Expecting property name"):
        labelled.json_pairs(str(gold), "utf-8", "label", "gold")


def test_concatenated_pretty_printed_objects_are_records():
    data = b'{\n  "id": "a",\n  "text": "one"\n}\n{\n  "id": "b",\n  "text": "two"\n}\n'
    assert read(data, "jsonl") == [(1, {"id": "a", "text": "one"}, [], None, None),
                                   (2, {"id": "b", "text": "two"}, [], None, None)]
