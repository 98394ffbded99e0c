"""The public surface: every name a module exports exists, and the seed's names import."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "connector",
    "connector.errors",
    "connector.chunks",
    "connector.settings",
    "connector.sources",
    "connector.dense",
    "connector.sparse",
    "connector.sparse.generator",
    "connector.store._client",
    "connector.store._gateway",
    "connector.store._schema",
    "connector.store._writer",
    "connector._files",
    "connector.pipeline.syncer",
    "connector.search",
    "connector.queries",
    "connector.store.edge",
    "connector.runs.manifest",
    "connector.switches",
    "connector.telemetry",
    "connector.runs._collection",
    "connector.runs._recorder",
    "connector.runs.live",
    "connector.runs._process",
    "connector.runs.record",
    "connector._files",
    "connector.store.migrator",
    "connector.store._rebuild",
    "connector.cli",
    "connector.wiring",
    "connector.store",
    "connector.runs",
    "connector.pipeline",
    "connector.pipeline.stages",
    "connector.gpu",
    "connector.gpu._probe",
    "connector.gpu._lease",
    "connector.gpu._cuda",
    "connector.gpu._batching",
    "connector.gpu._staging",
    "connector.gpu._executor",
]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__, f"{name} exports nothing"
    for member in module.__all__:
        assert getattr(module, member) is not None, f"{name}.{member}"


def test_seed_names_import_from_connector_sparse() -> None:
    from connector.sparse import ChunkRecord, SparseInferenceResult, SparseVectorGenerator

    assert SparseVectorGenerator.__name__ == "SparseVectorGenerator"
    assert SparseInferenceResult.__name__ == "SparseInferenceResult"
    assert ChunkRecord(text="t").metadata == {}


def test_importing_the_gpu_package_loads_neither_torch_nor_nvml() -> None:
    import subprocess
    import sys

    code = (
        "import sys, connector.gpu, connector.pipeline.stages\n"
        "heavy = {'torch', 'pynvml', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
