"""The sparse model registry: every class describes itself, and takes its options from settings."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest

from connector.errors import ConfigError
from connector.settings import SparseSettings, load_settings
from connector.sparse import (
    SPARSE_MODEL_REGISTRY,
    SparseModel,
    SparseModelDescription,
    SparseVectorGenerator,
    sparse_model,
)
from connector.sparse.bm25 import Bm25
from connector.sparse.bm25_engine import EngineBm25
from connector.sparse.bm42 import Bm42
from connector.sparse.generator import ModelRegistry
from connector.sparse.splade import Splade

NAMES = ["qdrant-bm25", "qdrant-bm25-engine", "qdrant-minilm-attention", "splade"]


def sparse(**section: Any) -> SparseSettings:
    return load_settings(None, {"sparse": section}).sparse


@pytest.mark.parametrize("model", SPARSE_MODEL_REGISTRY, ids=lambda m: m.__name__)
def test_every_registered_class_describes_itself_completely(model: type[SparseModel]) -> None:
    assert issubclass(model, SparseModel) and not model.__abstractmethods__
    # Its own description, not one inherited from a sibling flavour.
    described = vars(model)["description"]
    assert isinstance(described, SparseModelDescription)
    for field in dataclasses.fields(described):
        value = getattr(described, field.name)
        if field.name == "base_model":
            assert value is None or (isinstance(value, str) and value)
        elif field.name in {"idf", "auto_avg_len"}:
            assert isinstance(value, bool)
        elif field.name == "recommended_batch_size":
            assert isinstance(value, int) and value > 0
        else:
            assert isinstance(value, str) and value, field.name
    assert described.options_key in SparseSettings.model_fields
    assert sparse_model(described.name) is model


def test_names_are_unique_and_the_registry_holds_every_model() -> None:
    names = [model.description.name for model in SPARSE_MODEL_REGISTRY]
    assert sorted(names) == sorted(set(names)) == NAMES


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        sparse_model("bm99")
    assert str(caught.value) == (
        "sparse.model: unknown sparse model 'bm99'; known: " + ", ".join(NAMES)
    )


@pytest.mark.parametrize(
    ("model", "section", "expected"),
    [
        (Bm25, {}, {"k": 1.2, "b": 0.75, "avg_len": 256.0, "language": "english"}),
        (
            EngineBm25,
            {"bm25": {"k": 1.5, "avg_len": 90}},
            {"k": 1.5, "b": 0.75, "avg_len": 90.0, "language": "english"},
        ),
        (Bm42, {}, {"model": "all-MiniLM-L6-v2"}),
        (Bm42, {"bm42": {"model": "/models/minilm"}}, {"model": "/models/minilm"}),
        (Splade, {}, {"model": None}),
        (Splade, {"splade": {"model": "m", "max_length": 64}}, {"model": "m", "max_length": 64}),
    ],
)
def test_options_come_from_the_model_s_own_settings_section(
    model: type[SparseModel], section: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert model.options(sparse(**section)) == expected


@pytest.mark.parametrize("model", [Bm25, EngineBm25], ids=lambda m: m.__name__)
def test_bm25_takes_a_resolved_auto_avg_len_and_records_its_options(
    model: type[SparseModel],
) -> None:
    auto = sparse(model=model.description.name, bm25={"avg_len": "auto"})
    with pytest.raises(ConfigError, match="'auto' was not resolved to a number"):
        model.options(auto)
    options = model.options(auto, avg_len=42.5)
    assert options["avg_len"] == 42.5
    assert model.recorded_options(auto, options) == options | {"avg_len_auto": True}
    assert "avg_len=42.5" in model.from_settings(auto, avg_len=42.5).signature

    fixed = sparse(bm25={"avg_len": 100})
    # A configured number wins over a measured one, and is recorded as configured.
    options = model.options(fixed, avg_len=42.5)
    assert options["avg_len"] == 100
    assert model.recorded_options(fixed, options)["avg_len_auto"] is False


@pytest.mark.parametrize("model", [Bm42, Splade], ids=lambda m: m.__name__)
def test_models_without_avg_len_ignore_it_and_record_no_options(model: type[SparseModel]) -> None:
    settings = sparse(bm25={"avg_len": "auto"}, splade={"model": "m"})
    options = model.options(settings)
    assert model.options(settings, avg_len=42.5) == options
    assert model.recorded_options(settings, options) == {}


def test_from_settings_builds_what_the_constructor_builds() -> None:
    settings = sparse(
        bm25={"k": 1.5, "b": 0.5, "avg_len": 120}, splade={"model": "m", "max_length": 16}
    )
    assert Bm25.from_settings(settings).signature == Bm25(k=1.5, b=0.5, avg_len=120).signature
    assert (
        EngineBm25.from_settings(settings).signature
        == EngineBm25(k=1.5, b=0.5, avg_len=120).signature
    )
    assert Bm42.from_settings(settings).signature == Bm42().signature
    assert Splade.from_settings(settings).signature == "splade|m|max_len=16"


def test_bm42_runs_batches_of_its_recommended_size_unless_told_otherwise() -> None:
    def batch_size(encoder: Bm42) -> int:
        # An encoder pickles with the options it was built with.
        return int(encoder.__reduce__()[1][0]["batch_size"])

    assert batch_size(Bm42.from_options({})) == Bm42.description.recommended_batch_size
    assert batch_size(Bm42.from_options({"batch_size": 8})) == 8


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (Bm25, {"k": -1}, "sparse.bm25: k must be >= 0"),
        (EngineBm25, {"language": "german"}, "sparse.bm25: language 'german' is not supported"),
        (Bm42, {"model": " "}, "sparse.bm42: model must be a non-empty string"),
        (Splade, {"model": None}, "sparse.splade.model: the splade model needs a checkpoint"),
        (Splade, {"model": "m", "max_length": 0}, "sparse.splade: max_length must be a positive"),
    ],
)
def test_bad_options_are_config_errors_naming_the_settings_section(
    model: type[SparseModel], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        model.from_options(options)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("model", [Bm25, EngineBm25], ids=lambda m: m.__name__)
def test_vectors_carry_the_weighting_their_class_describes(model: type[SparseModel]) -> None:
    generator = SparseVectorGenerator(ModelRegistry())
    name = model.description.name
    assert generator.registry.description(name) is model.description
    query = generator.encode_query("supersonic flutter", name)
    assert query["stats"]["weighting"] == model.description.weighting == "bm25-tf"


def test_importing_the_registry_loads_no_model_library() -> None:
    # A fresh interpreter: this one has loaded torch for other tests already.
    probe = "import sys, connector.sparse; print(*sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert "connector.sparse._registry" in done.stdout.split()
    assert not {"torch", "transformers", "sentence_transformers"} & set(done.stdout.split())
