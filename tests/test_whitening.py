"""PCA whitening: fitted in Spark from partial sums equals a numpy fit of the same rows."""
import numpy as np
import pytest

from jobs.core.config import ConfigError
from jobs.embedding.whitening import WhiteningOptions, fit_whitening
from jobs.tables import contracts
from udfs import whitening


def embeddings_frame(spark, x, model="toy-16"):
    rows = [(f"id-{i:03d}", "test", None, model, [float(v) for v in vec], "ok", None) for i, vec in enumerate(x)]
    rows.append(("bad", "test", None, model, None, "decode_error", "not an image"))
    return contracts.check_embeddings(spark.createDataFrame(rows, contracts.EMBEDDINGS.schema).repartition(3),
                                      contracts.EmbeddingsCheck(), "a test table")


def test_whitening_fitted_in_spark_equals_numpy(spark, tmp_path):
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(300, 16)) * np.linspace(3, 0.2, 16) + 1.5).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fitted = fit_whitening(embeddings_frame(spark, x), str(tmp_path / "w"), WhiteningOptions(8, 0.1))
    # an independent numpy fit: population covariance, its leading eigenpairs, the same shrinkage
    values, vectors = np.linalg.eigh(np.cov(x.astype(np.float64), rowvar=False, bias=True))
    values, vectors = values[::-1], vectors[:, ::-1]
    shrunk = 0.9 * values[:8] + 0.1 * values.mean()
    np.testing.assert_allclose(fitted.mean, x.astype(np.float64).mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(fitted.eigenvalues, shrunk, rtol=1e-4, atol=1e-7)
    projection = vectors[:, :8] / np.sqrt(shrunk)
    signs = np.sign(np.sum(fitted.projection * projection, axis=0))  # eigenvectors have no sign
    np.testing.assert_allclose(fitted.projection, projection * signs, rtol=1e-4, atol=1e-4 * np.abs(projection).max())
    # the whitened vectors are decorrelated: unit variance along every kept component
    white = (x - fitted.mean) @ fitted.projection
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True) * (shrunk / values[:8]),
                               np.eye(8), atol=1e-3)
    # saved with its manifest, and read back the same
    loaded = whitening.load(str(tmp_path / "w"))
    np.testing.assert_array_equal(loaded.projection, fitted.projection)
    manifest = (tmp_path / "w" / "manifest.json").read_text()
    assert '"n": 300' in manifest and '"input_dim": 16' in manifest and '"output_dim": 8' in manifest


def test_the_api_fits_and_applies_a_whitening_keeping_bad_rows(spark, tmp_path):
    import sparkamp

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 16)).astype(np.float32)
    df, folder = embeddings_frame(spark, x, "toy-16+bf16").rows, str(tmp_path / "w")
    assert sparkamp.fit_whitening(df, folder, whiten_dim=10) == {"input_dim": 16, "output_dim": 10, "n": 40}
    fitted = whitening.load(folder)
    out = sparkamp.whiten(df, folder).toPandas().set_index("id")
    assert out.loc["bad", "status"] == "decode_error" and out.loc["bad", "embedding"] is None
    got = np.stack(out.loc[[f"id-{i:03d}" for i in range(40)], "embedding"].to_numpy())
    np.testing.assert_allclose(got, whitening.apply(fitted, x), atol=1e-6)
    assert set(out["model"]) == {f"toy-16+whiten:{folder}+bf16"} and got.shape == (40, 10)
    with pytest.raises(ConfigError, match="whiten_shrinkage"):
        sparkamp.fit_whitening(df, folder, whiten_shrinkage=2.0)


def test_bad_whitening_options_and_files():
    with pytest.raises(ConfigError, match="whiten_shrinkage"):
        WhiteningOptions(0, 1.5).check()
    with pytest.raises(ValueError, match="at least 2 vectors"):
        whitening.fit(whitening.partial_sums([np.ones((1, 4), np.float32)]))
    with pytest.raises(ValueError, match="not a saved whitening"):
        whitening.load("/nonexistent")


def test_the_embedding_function_applies_a_saved_whitening(tmp_path):
    from udfs import cnn

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    plain = cnn.load_image_model(cnn.ImageModelSpec(image_size=64, pooling="gem"))
    raw = cnn.embed_batch(plain, pixels)
    fitted = whitening.fit(whitening.partial_sums([raw]), 6, 0.1)
    whitening.save(fitted, str(tmp_path / "w"), {"model": plain.label})
    spec = cnn.ImageModelSpec(image_size=64, pooling="gem", whitening=str(tmp_path / "w"))
    white = cnn.load_image_model(spec)
    assert white.label == f"efficientnet-lite0+gem3+whiten:{tmp_path / 'w'}" and white.dim == 6
    assert cnn.spec_from_label(white.label).whitening == str(tmp_path / "w")
    np.testing.assert_allclose(cnn.embed_batch(white, pixels), whitening.apply(fitted, raw), atol=1e-5)
    # a whitening of other embeddings, or a folder that holds none, is refused naming the key
    whitening.save(whitening.fit(whitening.partial_sums([raw[:, :100]])), str(tmp_path / "w100"), {})
    with pytest.raises(ValueError, match="fitted on 100-d embeddings, but this model makes 1280-d"):
        cnn.load_image_model(cnn.ImageModelSpec(image_size=64, whitening=str(tmp_path / "w100")))
    with pytest.raises(ValueError, match="whitening: .* not a saved whitening"):
        cnn.check_spec(cnn.ImageModelSpec(whitening=str(tmp_path)))
