"""Config loading and CLI errors: caught before any Spark session starts."""
from __future__ import annotations

import subprocess
import sys

import pytest

from jobs import embed_images, embed_texts
from jobs.core import config
from jobs.core import yaml_loader
from jobs.core.config import ConfigError
from tests.conftest import ROOT


def load_images(tmp_path, yaml_text="", sets=(), **flags):
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml_text)
    return config.load(embed_images.Config, str(conf), list(sets), flags)


def test_yaml_sets_and_flags_layer_in_order(tmp_path):
    (tmp_path / "in").mkdir()
    cfg = load_images(tmp_path, f"input: {tmp_path / 'in'}\noutput: {tmp_path / 'a'}\nbatch_size: 3\n",
                      sets=[f"output={tmp_path / 'b'}", "spark.sql.shuffle.partitions=3",
                            "extensions=jpg,png", "allow_random_weights=true"],
                      output=str(tmp_path / "c"))
    assert cfg.batch_size == 3 and cfg.output == str(tmp_path / "c")
    assert cfg.spark == {"spark.sql.shuffle.partitions": "3"}
    assert cfg.extensions == ["jpg", "png"] and cfg.allow_random_weights is True
    with pytest.raises(Exception):
        cfg.batch_size = 5  # frozen


@pytest.mark.parametrize("yaml_text, sets, needle", [
    ("batchsize: 3\n", [], "unknown key 'batchsize' (did you mean 'batch_size'?)"),
    ("batch_size: many\n", [], "key 'batch_size' expects integer, got 'many'"),
    ("batch_size: true\n", [], "key 'batch_size' expects integer"),
    ("", ["batch_size=x"], "key 'batch_size' expects integer, got 'x'"),
    ("", ["mode=replace"], "key 'mode' expects one of overwrite, append, error-if-exists"),
    ("", ["nonsense"], "--set expects key=value"),
    ("", ["batch_size=0"], "key 'batch_size' must be > 0"),
    ("", ["model=alexnetz"], "key 'model': unknown image model 'alexnetz'"),
    ("", ["model=resnet50"], "key 'model': model 'resnet50' has no local weights"),
    ("- a\n- b\n", [], "must hold a mapping"),
    ("batch_size: 3\nbatch_size: 4\n", [], "key 'batch_size' is given twice, on line 1 and line 2; give it once"),
    ("spark:\n  spark.a: 1\n  spark.b: 2\n  spark.a: 3\n", [], "key 'spark.a' is given twice, on line 2 and line 4"),
])
def test_bad_keys_name_the_key_and_what_is_accepted(tmp_path, yaml_text, sets, needle):
    (tmp_path / "in").mkdir()
    sets = [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", *sets]
    with pytest.raises(ConfigError) as err:
        load_images(tmp_path, yaml_text, sets)
    assert needle in str(err.value)


def test_missing_input_output_equal_or_inside_input(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError, match="key 'input': .* does not exist"):
        load_images(tmp_path, input=str(tmp_path / "nope"), output=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="glob .* matches no file"):
        load_images(tmp_path, input=str(tmp_path / "in" / "*.jpg"), output=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="key 'output': .* is the input"):
        load_images(tmp_path, input=str(tmp_path / "in"), output=str(tmp_path / "in") + "/")
    with pytest.raises(ConfigError, match="inside the input"):
        load_images(tmp_path, input=str(tmp_path / "in"), output=str(tmp_path / "in" / "emb"))
    defaulted = load_images(tmp_path, input=str(tmp_path / "in"), warehouse=str(tmp_path / "wh"))
    assert defaulted.output == str(tmp_path / "wh" / "image_embeddings")
    with pytest.raises(ConfigError, match="is the input"):
        config.load(embed_texts.Config, flags={"input": "table:db.t", "output": "table:DB.T"})


def test_text_config_checks_templates_and_vector_files(tmp_path):
    data = tmp_path / "t.jsonl"
    data.write_text('{"id": "1", "text": "x"}\n')
    base = {"input": str(data), "output": str(tmp_path / "o")}
    with pytest.raises(ConfigError, match="key 'text_template'.*names no column"):
        config.load(embed_texts.Config, sets=["text_template=plain"], flags=base)
    with pytest.raises(ConfigError, match="key 'vectors_path'.*pickle"):
        (tmp_path / "v.kv").write_bytes(b"x")
        config.load(embed_texts.Config, sets=["model=word-vectors", f"vectors_path={tmp_path / 'v.kv'}"],
                    flags=base)
    cfg = config.load(embed_texts.Config, sets=["text_template={title}. {body}"], flags=base)
    assert [name for _, name in cfg.template_fields if name] == ["title", "body"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_config_error_exits_nonzero_before_spark(tmp_path):
    result = run_cli("embed-images", "--input", str(tmp_path / "missing"), "--output",
                     str(tmp_path / "out"))
    assert result.returncode == 2
    assert "key 'input'" in result.stderr and "does not exist" in result.stderr
    assert "starting Spark session" not in result.stderr and "log4j" not in result.stderr
    result = run_cli("embed-texts", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--set", "colour=blue")
    assert result.returncode == 2 and "unknown key 'colour'" in result.stderr


def test_cli_help_lists_jobs_and_every_key():
    overview = run_cli("--help")
    assert overview.returncode == 0 and "embed-images" in overview.stdout and "embed-texts" in overview.stdout
    for job in (embed_images, embed_texts):
        text = run_cli(job.NAME, "--help").stdout
        for name in config.fields(job.Config):
            assert f"  {name} " in text, name
    assert "--text-column" in run_cli("embed-texts", "--help").stdout


def test_spark_submit_entry_point_parses_conf_without_spark(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("input: /definitely/not/here\noutput: /tmp/x\n")
    result = subprocess.run([sys.executable, str(ROOT / "jobs" / "embed_texts.py"), "--conf", str(conf)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "key 'input'" in result.stderr


def test_conf_files_load(tmp_path, monkeypatch):
    """Every shipped YAML is valid for its job once the demo data exists."""
    from jobs import demo

    (tmp_path / "warehouse/demo/data/images").mkdir(parents=True)
    (tmp_path / "warehouse/demo/data/fortunes.jsonl").write_text('{"id": "a", "text": "b"}\n')
    monkeypatch.chdir(tmp_path)
    loaded = {name: config.load(job.Config, str(ROOT / "conf" / f"{name}.yaml"))
              for job, name in ((embed_images, "embed_images"), (embed_texts, "embed_texts"), (demo, "demo"))}
    assert loaded["embed_images"].model == "efficientnet-lite0"
    assert loaded["embed_texts"].text_column == "text" and loaded["demo"].images == 2000


def test_readme_config_reference_is_current():
    from jobs.core import docs

    text = docs.README.read_text()
    assert docs.reference_markdown() in text, "README's config reference is stale: run `make docs`"


def test_yaml_loader_refuses_repeated_keys_at_any_depth_and_keeps_merges():
    merged = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n"  # y overrides the merged y: not a repeat
    assert yaml_loader.load(merged) == {"base": {"x": 1, "y": 2}, "d": {"x": 1, "y": 3}}
    assert yaml_loader.load_text(merged)["d"] == {"x": "1", "y": "3"}
    for loader in (yaml_loader.load, yaml_loader.load_text):
        with pytest.raises(yaml_loader.DuplicateKeyError, match="key 'k' is given twice, on line 3 and line 4"):
            loader("a:\n  - b:\n      k: 1\n      k: 2\n")
    with pytest.raises(yaml_loader.DuplicateKeyError, match="key 'true' is given twice, on line 1 .written 'yes'"):
        yaml_loader.load("yes: 1\ntrue: 2\n")  # the same boolean key to YAML 1.1
    assert yaml_loader.load_text("yes: 1\ntrue: 2\n") == {"yes": "1", "true": "2"}  # two texts
