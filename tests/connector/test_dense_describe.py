"""Size and signature of a dense model from its folder's files, without loading the weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from connector.dense import SentenceTransformerEncoder, describe_model_folder, resolve_model_path
from connector.errors import ModelError
from connector.settings import DenseModelConfig

BUNDLED = Path(resolve_model_path("all-MiniLM-L6-v2"))


def copy_config_only(tmp_path: Path) -> Path:
    """The bundled model's description files, with weights that cannot load."""
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    (folder / "model.safetensors").write_bytes(b"not weights")
    return folder


def test_description_matches_the_loaded_model() -> None:
    encoder = SentenceTransformerEncoder(DenseModelConfig(model="all-MiniLM-L6-v2"))
    before = encoder.signature
    encoder.encode(["lift on a wing"])
    model = encoder.model
    assert describe_model_folder(str(BUNDLED)) == (
        model.get_embedding_dimension(),
        model.max_seq_length,
    )
    assert encoder.signature == before == "all-MiniLM-L6-v2|dim=384|max_seq=256"


def test_size_and_signature_need_no_weights(tmp_path: Path) -> None:
    folder = copy_config_only(tmp_path)
    encoder = SentenceTransformerEncoder(DenseModelConfig(model=str(folder)))
    assert encoder.dim == 384
    assert encoder.signature == f"{folder}|dim=384|max_seq=256"
    with pytest.raises(ModelError, match="cannot load"):
        encoder.encode(["text"])


@pytest.mark.parametrize("change", ["dense module", "two pooling modes", "no max_seq_length"])
def test_other_layouts_are_not_described(tmp_path: Path, change: str) -> None:
    folder = copy_config_only(tmp_path)
    if change == "dense module":
        modules = json.loads((folder / "modules.json").read_text())
        modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "x.models.Dense"})
        (folder / "modules.json").write_text(json.dumps(modules))
    elif change == "two pooling modes":
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        pooling["pooling_mode_max_tokens"] = True
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    else:
        (folder / "sentence_bert_config.json").write_text("{}")
    assert describe_model_folder(str(folder)) == ()
    # Not described: the model is loaded to ask it, and these weights cannot load.
    with pytest.raises(ModelError, match="cannot load"):
        _ = SentenceTransformerEncoder(DenseModelConfig(model=str(folder))).dim
