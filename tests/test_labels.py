"""Label sets, heads, Wmap's orientation and limit, artefacts, metrics: no Spark."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.core.config import ConfigError
from jobs.labelling import methods
from jobs.labelling.examples import Examples
from jobs.labelling.self_training import self_train, spread
from jobs.labelling.sets import read_label_set
from udfs import finetune, heads, texts
from udfs.classification import NONE, classification_metrics
from udfs.heads import Head
from udfs.label_sets import Label, parse_label_set
from udfs.label_udfs import ScoreOptions, label_rows


@pytest.mark.parametrize("data, message", [
    ({"labels": ["only"]}, "at least 2 labels"),
    ({"labels": ["a", "b", "a"]}, "repeated: ['a']"),
    ({"labels": [{"name": "a", "examples": []}, "b"]}, "`examples` must be a non-empty list"),
    ({"labels": [{"name": "a", "colour": "red"}, "b"]}, "unknown key(s) ['colour']"),
    ({"labels": ["a", "b"], "templates": ["no placeholder"]}, "no {name} placeholder"),
    ({"labels": [{"description": "no name"}, "b"]}, "`name` must be a non-empty string"),
    ({"names": ["a", "b"]}, "a mapping with a `labels` list"),
])
def test_bad_label_sets_get_clear_errors(data, message):
    with pytest.raises(ValueError, match=None) as err:
        parse_label_set(data, "set.yaml")
    assert message in str(err.value) and "set.yaml" in str(err.value)


def test_label_set_yaml_keeps_every_name_as_written(tmp_path):
    """YAML 1.1 reads these plain scalars as booleans, null, numbers and a date; a label set keeps text."""
    written = ["yes", "no", "on", "off", "y", "n", "true", "False", "null", "~", "2019", "2019-01-01", "1.5",
               "0x1F", ".inf"]
    (tmp_path / "names.yaml").write_text(f"labels: [{', '.join(written)}]\n")
    assert read_label_set(str(tmp_path / "names.yaml")).names == written
    (tmp_path / "full.yaml").write_text("templates: ['Is it {name}?']\nlabels:\n"
                                        "  - {name: yes, description: 2019, keywords: [on, off], examples: [no, 1]}\n"
                                        "  - name: null\n    description:\n")
    label_set = read_label_set(str(tmp_path / "full.yaml"))
    assert label_set.labels[0] == Label("yes", "2019", ("on", "off"), ("no", "1"))
    assert label_set.labels[1] == Label("null") and label_set.templates == ("Is it {name}?",)


@pytest.mark.parametrize("text, message", [
    ("labels: [a, b]\ntemplates: ['{name}']\nlabels: [c, d]\n", "key 'labels' is given twice, on line 1 and line 3"),
    ("labels:\n  - name: a\n    description: x\n    name: b\n  - c\n", "key 'name' is given twice, on line 2 and line 4"),
    ("labels: [a, b\n", "is not valid YAML"),
    (b"labels: [caf\xe9, b]\n", "is not UTF-8 text (invalid continuation byte at byte 12)"),
])
def test_label_set_yaml_errors_name_the_key_and_line(tmp_path, text, message):
    path = tmp_path / "set.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as err:
        read_label_set(str(path))
    assert str(err.value).startswith("key 'labels': ") and message in str(err.value)
    assert str(path) in str(err.value)


def test_label_texts_fill_templates_and_append_descriptions():
    label_set = parse_label_set({"templates": ["About {name}.", "{name} news"], "labels": [
        {"name": "Sports", "description": "Games and teams.", "keywords": ["golf", "tennis"],
         "examples": ["A goal in the last minute."]}, "World"]}, "x")
    assert label_set.texts() == [["About Sports. Games and teams. golf, tennis.",
                                  "Sports news Games and teams. golf, tennis."], ["About World.", "World news"]]
    assert label_set.inline_examples() == (["A goal in the last minute."], ["Sports"])


def test_wmap_with_infinite_lambda_is_its_input_map():
    rng = np.random.default_rng(0)
    docs, targets, zmap = rng.normal(size=(24, 16)), rng.normal(size=(24, 16)), rng.normal(size=(32, 16))
    m = heads.fit_wmap(docs, targets, 1e12)
    assert np.allclose(m, np.eye(16), atol=1e-6)
    queries, labels = rng.normal(size=(50, 32)), heads.normalise(rng.normal(size=(3, 16)))
    plain = Head("zmap", list("abc"), labels, zmap.astype(np.float32)).scores(queries)
    mapped = Head("wmap", list("abc"), labels, (zmap @ m).astype(np.float32)).scores(queries)
    assert np.allclose(plain, mapped, atol=1e-5)


def test_wmap_learns_the_map_the_right_way_round():
    """Examples mapped by a rotation R are recovered as docs @ M ≈ targets, i.e. M ≈ R, not Rᵀ."""
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    docs = heads.normalise(rng.normal(size=(200, 8)))
    m = heads.fit_wmap(docs, docs @ rotation, 1e-6)
    assert np.allclose(m, rotation, atol=1e-3)
    assert not np.allclose(m, rotation.T, atol=1e-1)


def test_zmap_is_a_ridge_map_between_spaces():
    rng = np.random.default_rng(2)
    sentence = heads.normalise(rng.normal(size=(500, 12)))
    truth = rng.normal(size=(12, 6))
    z = heads.fit_zmap(sentence, heads.normalise(sentence @ truth) * 1.0, 1e-6)
    mapped = heads.normalise(sentence @ z)
    assert np.mean(np.sum(mapped * heads.normalise(sentence @ truth), axis=1)) > 0.99
    shrunk = heads.fit_zmap(sentence, heads.normalise(sentence @ truth), 1e6)
    assert np.abs(shrunk).max() < 1e-3  # a huge alpha pulls the map to zero


@pytest.mark.parametrize("counts", [(20, 20), (20, 20, 20), (20, 6), (20, 20, 3)])
def test_logreg_head_matches_sklearns_class_balanced_logistic_regression(counts):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    classes = len(counts)
    y = np.repeat(np.arange(classes), counts)
    x = heads.normalise(rng.normal(size=(len(y), 5)) + 2 * np.eye(5)[y])
    weights, bias = heads.fit_logreg(x, y, classes, 1.0, 0)
    ours = Head("logreg", [str(c) for c in range(classes)], weights, bias=bias).scores(x)
    theirs = LogisticRegression(C=1.0, max_iter=2000, random_state=0, class_weight="balanced").fit(x, y)
    assert np.allclose(ours, theirs.predict_proba(x), atol=1e-4)
    if len(set(counts)) == 1:  # equal counts: balancing changes nothing
        plain = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(x, y).predict_proba(x)
        assert np.allclose(ours, plain, atol=1e-4)


def test_label_spreading_corrects_labels_its_neighbours_contradict():
    """Two tight clusters of 20 with 2 rows of the first labelled as the second: spread over the 5-NN graph
    (sklearn's LabelSpreading), every row gets its cluster's label; the third label, never predicted, keeps
    probability 0; the 2 relabelled rows are the least sure of their cluster."""
    rng = np.random.default_rng(5)
    truth = np.repeat([0, 1], 20)
    x = heads.normalise(np.eye(8)[truth] + 0.05 * rng.normal(size=(40, 8)))
    given = truth.copy()
    given[[3, 11]] = 1
    out = spread(x, given, 3, 5, 0.8)
    assert out.shape == (40, 3) and np.array_equal(out.argmax(axis=1), truth)
    assert np.allclose(out.sum(axis=1), 1) and not out[:, 2].any()
    assert set(np.argsort(out[:20, 0])[:2]) == {3, 11}
    assert np.array_equal(spread(x[:1], np.array([1]), 3, 5, 0.8), [[0.0, 1.0, 0.0]])  # no neighbours


def test_self_training_stops_when_its_pseudo_labels_hold_one_label(caplog):
    """Every row of the table nearest label 'a' (no examples): round 1 cannot fit a two-label head (scikit-learn
    raised a traceback), so the starting head comes back, 0 rounds fitted, with a warning naming the label;
    with rows of both labels both rounds are fitted."""
    rng = np.random.default_rng(0)
    start = Head("zero-shot", ["a", "b"], np.eye(2, 4, dtype=np.float32))
    table = heads.normalise(np.eye(4)[[0] * 10] + 0.1 * rng.normal(size=(10, 4))).astype(np.float32)
    none, stats = Examples(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), None), {}
    assert self_train(table, methods.FitOptions(self_training=2), start, none, stats) is start
    assert stats == {"self_training_rows": 10, "self_training_rounds": 0}
    assert "self-training stopped before round 1" in caplog.text and "are all 'a'" in caplog.text
    both = heads.normalise(np.eye(4)[[0] * 5 + [1] * 5] + 0.1 * rng.normal(size=(10, 4))).astype(np.float32)
    head = self_train(both, methods.FitOptions(self_training=2), start, none, stats)
    assert stats["self_training_rounds"] == 2 and head.method == "zero-shot+self-training"
    assert np.array_equal(head.scores(both).argmax(axis=1), [0] * 5 + [1] * 5)


WORDS = {0: "goal match team season coach league", 1: "shares market profit bank stocks earnings",
         2: "court judge trial law lawyer verdict"}


def worded(rng, n: int) -> tuple[list[str], np.ndarray]:
    """n short texts, each 4 words of one of WORDS' 3 topics plus 2 shared filler words, and their topics."""
    y = rng.integers(0, 3, n)
    return [" ".join(rng.choice(WORDS[int(c)].split(), 4).tolist() + ["today", "news"]) for c in y], y


def test_the_tfidf_view_is_sklearns_classifier_and_survives_a_save(tmp_path):
    """LexicalView.probabilities equals scikit-learn's own TfidfVectorizer + LogisticRegression
    predict_proba on new texts (an empty one and one of unseen words included); a head saved with the
    view and loaded scores the same, the mean of its two views for rows with text."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from udfs import lexical

    rng = np.random.default_rng(3)
    train, y = worded(rng, 60)
    view = lexical.fit(lexical.vocabulary(train), train, y, 4, seed=0)  # label 3 has no row: never predicted
    new = worded(rng, 5)[0] + ["", "zebra quantum"]
    vectorizer = TfidfVectorizer(min_df=2, max_features=lexical.MAX_TERMS, **lexical.VECTORIZER).fit(train)
    model = LogisticRegression(C=lexical.C, max_iter=2000, random_state=0, class_weight="balanced")
    model.fit(vectorizer.transform(train), y)
    p = view.probabilities(new)
    assert np.allclose(p[:, :3], model.predict_proba(vectorizer.transform(new)), atol=1e-5)
    assert np.allclose(p[:, 3], 0) and (p[:5].argmax(axis=1) < 3).all()

    x = heads.normalise(rng.normal(size=(7, 4))).astype(np.float32)
    head = Head("centroid+self-training", ["a", "b", "c", "d"], rng.normal(size=(4, 4)).astype(np.float32),
                bias=np.zeros(4, np.float32), params={"co_training": "tfidf"}, lexical=view)
    heads.save(head, str(tmp_path / "h"))
    back = heads.load(str(tmp_path / "h"))
    alone = Head(head.method, head.labels, head.classes, bias=head.bias).scores(x)
    written = new[:6] + [None]  # the last row has no text: its embedding alone
    assert np.allclose(back.scores(x, written), head.scores(x, written), atol=1e-6)
    assert np.allclose(back.scores(x, written)[:6], (alone[:6] + p[:6]) / 2, atol=1e-5)
    assert np.allclose(back.scores(x, written)[6], alone[6]) and np.allclose(back.scores(x), alone)


def test_co_training_lifts_a_weak_embedding_head_with_the_words(caplog):
    """Embeddings that hardly separate 3 topics, texts whose words do: self-training with co_training tfidf
    labels the table better than self-training alone, and its head carries the view; with no texts it warns
    and self-trains on the embeddings alone."""
    rng = np.random.default_rng(5)
    written, y = worded(rng, 300)
    centres = heads.normalise(rng.normal(size=(3, 8)))
    table = heads.normalise(centres[y] + 1.2 * rng.normal(size=(300, 8))).astype(np.float32)
    start = Head("zero-shot", ["a", "b", "c"], centres.astype(np.float32))
    none = Examples(np.zeros(0, np.int64), np.zeros((0, 8), np.float32), None)
    plain = self_train(table, methods.FitOptions(self_training=3), start, none, {})
    stats = {}
    cot = self_train(table, methods.FitOptions(self_training=3, co_training="tfidf"), start, none, stats, written)
    accuracy = {name: float((h.scores(table, written).argmax(axis=1) == y).mean())
                for name, h in (("plain", plain), ("cot", cot))}
    assert accuracy["cot"] > accuracy["plain"] + 0.1, accuracy
    assert cot.lexical is not None and cot.params["co_training"] == "tfidf" and stats["co_training_terms"] > 10
    blind = self_train(table, methods.FitOptions(self_training=3, co_training="tfidf"), start, none, stats,
                       [None] * 300)
    assert blind.lexical is None and stats["co_training_terms"] == 0
    assert "co_training: the 0 texts" in caplog.text and "300 of the 300 sampled rows have no readable text" \
        in caplog.text


def test_scarce_classes_are_those_under_half_the_median():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 3, 3])  # counts 4, 4, 1, 2 and class 4 has none
    assert heads.scarce_classes(y, 5) == ([(2, 1)], 3.0)  # 2 examples is not under 1.5; 0 is not scarce
    assert heads.scarce_classes(np.array([0, 1, 2]), 3) == ([], 1.0)
    assert heads.scarce_classes(np.array([], dtype=int), 2) == ([], 0.0)


def test_heads_round_trip_and_refuse_a_tampered_file(tmp_path):
    rng = np.random.default_rng(4)
    head = Head("wmap", ["a", "b", "c"], rng.normal(size=(3, 4)).astype(np.float32),
                rng.normal(size=(6, 4)).astype(np.float32), embedding_model="m", params={"wmap_lambda": 1.0})
    heads.save(head, str(tmp_path / "h"))
    back = heads.load(str(tmp_path / "h"))
    x = rng.normal(size=(5, 6))
    assert back.labels == head.labels and back.embedding_model == "m" and back.bias is None
    assert np.array_equal(back.scores(x), head.scores(x))
    np.savez(tmp_path / "h" / "head.npz", classes=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="sha256"):
        heads.load(str(tmp_path / "h"))
    with pytest.raises(ValueError, match="no manifest.json"):
        heads.load(str(tmp_path))


def test_label_rows_top_k_unknown_and_bad_rows():
    head = Head("zero-shot", ["x", "y", "z"], np.eye(3, dtype=np.float32))
    vectors = [np.array([1.0, 0.5, 0]), None, np.array([0.3, 0.3, 0.3]), np.array([0, 0, 1.0])]
    frame = label_rows(np.array(["a", "b", "c", "d"]), vectors, ["ok", "empty", "ok", "ok"],
                       [None, "the text is empty", None, None], head, ScoreOptions(2, 0.6, "zero-shot"))
    rows = [tuple(r) for r in frame[["id", "label", "rank", "status"]].astype(object).itertuples(index=False)]
    assert rows == [("a", "x", 1, "ok"), ("a", "y", 2, "ok"), ("b", None, pd_na(), "empty"),
                    ("c", "unknown", 1, "ok"), ("d", "z", 1, "ok"), ("d", "x", 2, "ok")]
    assert frame.loc[frame.id == "b", "error"].item() == "the text is empty"


def pd_na():
    import pandas as pd

    return pd.NA


def test_classification_metrics_by_hand():
    confusion = {("cat", "cat"): 3, ("cat", "dog"): 1, ("dog", "dog"): 2, ("dog", NONE): 1, ("eel", "cat"): 1}
    rows = {(r.metric, r.label, r.predicted): r.value for r in classification_metrics(confusion, 6, 2)}
    assert rows[("accuracy", None, None)] == pytest.approx(5 / 8)
    assert rows[("top_2_accuracy", None, None)] == pytest.approx(6 / 8)
    assert rows[("precision", "cat", None)] == pytest.approx(3 / 4)
    assert rows[("recall", "dog", None)] == pytest.approx(2 / 3)
    f1_cat, f1_dog = 0.75, 2 / 3  # cat: P = R = 3/4; dog: P = 2/3 (cat→dog counts), R = 2/3
    assert rows[("macro_f1", None, None)] == pytest.approx((f1_cat + f1_dog + 0.0) / 3)
    assert rows[("confusion", "dog", NONE)] == 1


def test_contrastive_pairs_are_balanced_and_never_self():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pairs = finetune.contrastive_pairs(labels, 5, seed=0)
    assert len(pairs) == 2 * 5 * len(labels)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert np.array_equal(same, pairs[:, 2] == 1) and pairs[:, 2].mean() == 0.5


def test_oversampled_pairs_cover_every_pair_and_balance_the_kinds():
    """setfit >= 1.0's default: 8 examples of 4 labels have 144 same-label pairs (32 self-pairs) and 384
    others; the positives are repeated up to 384, every unordered pair appears."""
    labels = np.repeat(np.arange(4), 8)
    pairs = finetune.pairs_for(labels, finetune.FineTuneOptions(sampling="oversampling", seed=3))
    assert pairs.shape == (768, 3) and pairs[:, 2].sum() == 384
    assert np.array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], pairs[:, 2] == 1)
    assert len({(i, j) for i, j, _ in pairs}) == 32 * 33 // 2
    with pytest.raises(ValueError, match="sampling 'pairs'; accepted: random, oversampling"):
        finetune.pairs_for(labels, finetune.FineTuneOptions(sampling="pairs"))


def test_label_texts_join_the_examples_as_weighted_copies():
    """setfit's head: a label text weighing k is k copies of it (sklearn's sample_weight), k = half the
    median examples per label × prior_weight."""
    rng = np.random.default_rng(0)
    x, y, prior = rng.normal(size=(12, 5)), np.repeat(np.arange(3), 4), rng.normal(size=(3, 5))
    xs, ys, weights = methods.with_label_texts(x, y, prior, 1.0)
    assert xs.shape == (15, 5) and ys[12:].tolist() == [0, 1, 2] and weights.tolist() == [1.0] * 12 + [2.0] * 3
    copies = heads.fit_logreg(np.vstack([x, prior, prior]), np.concatenate([y, [0, 1, 2] * 2]), 3, 1.0, 0)
    weighted = heads.fit_logreg(xs, ys, 3, 1.0, 0, weights)
    assert np.allclose(copies[0], weighted[0], atol=1e-3) and np.allclose(copies[1], weighted[1], atol=1e-3)


def test_padding_does_not_change_a_short_texts_embedding():
    """Mean pooling must ignore padding: a short text batched with a long one embeds as it does alone."""
    model = texts.load_text_model(texts.TextModelSpec())
    short, long = "A cat sat.", "A much longer sentence about markets, " * 20
    together = texts.embed_texts(model, [short, long], batch_size=8).embeddings[0]
    alone = texts.embed_texts(model, [short], batch_size=8).embeddings[0]
    assert float(together @ alone) > 0.9999


def test_packaged_glove_has_each_word_once():
    kv = texts.load_word_vectors()
    assert len(kv) == 400_000 and kv.index_to_key[:3] == ["the", ",", "."]
    assert kv.most_similar("king", topn=10) and "queen" in [w for w, _ in kv.most_similar("king", topn=10)]
