"""Nothing a user or a file supplies is unpickled or executed; index files are checked before use."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from jobs import cli
from tests.conftest import common_args


class Planted:
    """Unpickling this object would create `marker`: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_with_a_pickled_payload_are_refused(tmp_path):
    import torch

    from udfs import cnn

    marker, weights = tmp_path / "code-ran", tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2), "payload": Planted(marker)}, weights)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        cnn.load_image_model(cnn.ImageModelSpec("resnet18", weights_path=str(weights)))
    assert not marker.exists()


def test_yaml_tags_that_build_objects_are_refused(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    conf = tmp_path / "evil.yaml"
    conf.write_text(f"input: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    assert cli.main(["embed-texts", "--conf", str(conf), "--output", str(tmp_path / "o")]) == 2
    assert not marker.exists()
    assert "config error" in capsys.readouterr().err


def test_label_heads_hold_no_pickles(tmp_path):
    from udfs import heads

    marker = tmp_path / "code-ran"
    head = heads.Head("centroid", ["a", "b"], np.eye(2, dtype=np.float32), embedding_model="m")
    heads.save(head, str(tmp_path / "h"))
    with open(tmp_path / "h" / "head.npz", "wb") as fh:  # an object array, and a manifest that vouches for it
        np.savez(fh, classes=np.array([Planted(marker)], dtype=object), allow_pickle=True)
    import hashlib
    import json

    manifest = json.loads((tmp_path / "h" / "manifest.json").read_text())
    manifest["files"]["head.npz"] = hashlib.sha256((tmp_path / "h" / "head.npz").read_bytes()).hexdigest()
    (tmp_path / "h" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="(?i)pickle"):
        heads.load(str(tmp_path / "h"))
    assert not marker.exists()


def test_a_tampered_index_is_refused_before_any_search(spark, tmp_path, capsys, caplog):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    pd.DataFrame({"id": [f"v{i}" for i in range(50)], "source": "s", "content_hash": "h", "model": "m8",
                  "embedding": list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)),
                  "status": "ok", "error": None}).to_parquet(tmp_path / "emb.parquet")
    assert cli.main(["build-index", "--embeddings", str(tmp_path / "emb.parquet"), "--output",
                     str(tmp_path / "index"), *common_args(tmp_path)]) == 0
    with open(tmp_path / "index" / "index.faiss", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    code = cli.main(["search", "--index", str(tmp_path / "index"), "--queries", str(tmp_path / "emb.parquet"),
                     "--output", str(tmp_path / "nb"), *common_args(tmp_path)])
    assert code == 2 and not (tmp_path / "nb").exists()
    said = capsys.readouterr().err + caplog.text
    assert "index.faiss has sha256" in said and "changed or damaged" in said


def test_pickle_is_not_imported_by_our_code():
    """A guard: none of our modules imports pickle (Spark's own broadcast pickling is not ours)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = [str(p.relative_to(root)) for pkg in ("jobs", "udfs", "index") for p in (root / pkg).rglob("*.py")
                 if "import pickle" in p.read_text() or "pickle.load" in p.read_text()]
    assert offenders == [] and pickle  # noqa: B018
