"""The public surface of both packages, ``connector`` and ``tui``: each public module's
``__all__`` is exactly its public names (see ``tests/surface.py`` for the rule); and the command
and the GPU code import light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tests.surface import all_modules, public_modules, surface_problems

PACKAGES = ("connector", "tui")


@pytest.mark.parametrize("name", [m for p in PACKAGES for m in public_modules(p)])
def test_all_lists_exactly_the_public_names(name: str) -> None:
    assert surface_problems(name) == []


@pytest.mark.parametrize("name", [m for p in PACKAGES for m in all_modules(p)])
def test_every_exported_name_exists(name: str) -> None:
    # Private modules too: their __all__ is what their package re-exports.
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is None or exported, f"{name} exports nothing"
    for member in exported or []:
        assert getattr(module, member) is not None, f"{name}.{member}"


def test_the_check_sees_a_name_left_out_of_all(monkeypatch: pytest.MonkeyPatch) -> None:
    import connector

    monkeypatch.setattr(connector, "__all__", [n for n in connector.__all__ if n != "UnsafeDelete"])
    assert surface_problems("connector") == [
        "connector: public name 'UnsafeDelete' is not in __all__ (add it, or name it _UnsafeDelete)"
    ]


def test_the_check_sees_a_listed_name_that_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import connector.chunks

    monkeypatch.setattr(connector.chunks, "__all__", [*connector.chunks.__all__, "chunk_key"])
    assert surface_problems("connector.chunks") == [
        "connector.chunks.__all__ lists 'chunk_key', which the module does not have"
    ]


def test_seed_names_import_from_connector_sparse() -> None:
    from connector.sparse import ChunkRecord, SparseInferenceResult, SparseVectorGenerator

    assert SparseVectorGenerator.__name__ == "SparseVectorGenerator"
    assert SparseInferenceResult.__name__ == "SparseInferenceResult"
    assert ChunkRecord(text="t").metadata == {}


def test_importing_the_gpu_package_loads_neither_torch_nor_nvml() -> None:
    code = (
        "import sys, connector.gpu, connector.pipeline.stages\n"
        "heavy = {'torch', 'pynvml', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_connector_help_loads_no_third_party_package() -> None:
    # `connector --help` (and importing the command) runs on the standard library alone: no
    # torch, no qdrant-client, not even pydantic. A new top-level import that breaks this makes
    # every command start slower.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from connector.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "loaded = {m.partition('.')[0] for m in set(sys.modules) - before}\n"
        "foreign = loaded - set(sys.stdlib_module_names) - {'connector'}\n"
        "assert not foreign, sorted(foreign)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
