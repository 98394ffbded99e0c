"""Plug-in dense encoders: named in the settings, built by factory, synced and searched."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from connector.dense import PluginEncoder
from connector.dense_plugins import RateEncoder
from connector.errors import ConfigError
from connector.settings import Settings, load_settings
from connector.store.edge import EdgeClient
from connector.wiring import build_syncer
from tests.cli import run
from tests.fakes import ListSource, chunk

PLUGIN = "connector.dense_plugins:RateEncoder"
CORPUS = [
    chunk("shell", "buckling of cylindrical shells under axial compression"),
    chunk("plate", "boundary layer transition on a flat plate"),
    chunk("jet", "noise of a supersonic jet"),
]


def plugin_config(workdir: Path, entry: str = "", extra: str = "") -> Path:
    entry = entry or f'{{ encoder = "{PLUGIN}", name = "vec", options = {{ dim = 16 }} }}'
    path = workdir / "connector.toml"
    path.write_text(f'state_dir = "state"\n{extra}\n[dense]\nmodels = [{entry}]\n')
    return path


def test_a_sync_with_a_plugin_writes_its_vector_and_a_resync_encodes_nothing(
    workdir: Path,
) -> None:
    conf = load_settings(plugin_config(workdir))
    signature = "rate-encoder|dim=16"
    runs = []
    for _ in range(2):
        with build_syncer(
            conf, source=ListSource(CORPUS), client=EdgeClient(workdir / "qdrant"), record=False
        ) as job:
            runs.append(job.run())
            points, _ = job.store.scroll(job.writer.collection, with_vectors=True)
            metadata = job.store.metadata(job.writer.collection)
    first, again = runs
    assert first.counts.encoded == 3 and again.counts.encoded == 0
    assert again.counts.skipped_unchanged == 3
    assert len(points) == 3
    for point in points:
        assert isinstance(point.vector, dict) and len(point.vector["vec"]) == 16
        assert point.payload is not None and point.payload["encoded_with"]["vec"] == signature
    assert signature in json.dumps(metadata)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('{ encoder = "no_colon", name = "v" }', "is not of the form 'package.module:Factory'"),
        ('{ encoder = "no_such_module_x:F", name = "v" }', "module 'no_such_module_x' not found"),
        (
            '{ encoder = "connector.dense_plugins:Nope", name = "v" }',
            "module 'connector.dense_plugins' has no attribute 'Nope'",
        ),
        (
            f'{{ encoder = "{PLUGIN}", name = "v", options = {{ dim = 0 }} }}',
            "raised ValueError: dim, rate and batch_size must be positive",
        ),
        (
            f'{{ encoder = "{PLUGIN}", name = "v", options = {{ colour = 1 }} }}',
            "raised TypeError: ",
        ),
        ('{ encoder = "collections:OrderedDict", name = "v" }', "has no encode(texts) method"),
        ('{ encoder = "fractions:Fraction", name = "v" }', "has no encode(texts) method"),
    ],
)
def test_a_bad_plugin_is_a_config_error_naming_the_key(
    workdir: Path, entry: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(plugin_config(workdir, entry))
    assert "dense.models[0].encoder: " in str(caught.value)
    assert problem in str(caught.value)


class NoDim:
    """Encodes, but has no usable size or signature."""

    def __init__(self, dim: object = None, signature: object = "s") -> None:
        self.dim = dim
        self.signature = signature

    def encode(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] for _ in texts]


class Minimal:
    """The least a plug-in needs: no encode_query, batch_size or to()."""

    dim = 2
    signature = "minimal|v1"

    def encode(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(text)), 1.0] for text in texts]


class Flaky(Minimal):
    """Builds once (when the settings are checked), then fails, as an unreachable server might."""

    built = 0

    def __init__(self) -> None:
        Flaky.built += 1
        if Flaky.built > 1:
            raise ConnectionError("embedding server unreachable")


class Raising(Minimal):
    @property
    def signature(self) -> str:  # type: ignore[override]
        raise RuntimeError("no signature yet")


def test_a_minimal_plugin_gets_the_rest_of_the_contract(workdir: Path) -> None:
    from connector.wiring import dense_encoders

    entry = f'{{ encoder = "{__name__}:Minimal", name = "m" }}'
    (encoder,) = dense_encoders(load_settings(plugin_config(workdir, entry)))
    assert encoder.encode_query("abc") == [3.0, 1.0]
    assert getattr(encoder, "batch_size", None) == 32 and getattr(encoder, "to", 0) is None
    settings = load_settings(plugin_config(workdir))
    entry_ = settings.dense.models[0]
    assert pickle.loads(pickle.dumps(entry_)) == entry_  # plain data: a worker process builds it
    (rate,) = dense_encoders(settings)
    move = getattr(rate, "to", None)
    assert callable(move)
    move("cuda:0")  # nothing to move: it only records where it runs
    assert isinstance(rate, PluginEncoder) and rate.encoder.device == "cuda:0"


def test_a_plugin_that_fails_when_the_sync_builds_it_is_a_config_error(workdir: Path) -> None:
    from connector.wiring import dense_encoders

    Flaky.built = 0
    settings = load_settings(
        plugin_config(workdir, f'{{ encoder = "{__name__}:Flaky", name = "f" }}')
    )
    with pytest.raises(ConfigError, match=r"dense\.models\[0\]\.encoder: .*ConnectionError"):
        dense_encoders(settings)


def test_a_module_that_fails_to_import_and_odd_factories_are_named(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "broken_plugin_module.py").write_text("raise RuntimeError('half installed')\n")
    monkeypatch.syspath_prepend(str(workdir))
    cases = {
        "broken_plugin_module:F": "importing 'broken_plugin_module' failed (RuntimeError: half",
        "connector.dense_plugins:__all__": "'connector.dense_plugins:__all__' is not callable",
        f"{__name__}:Raising": "whose dim or signature raised RuntimeError: no signature yet",
        f"{__name__}:Minimal.nope": f"module {__name__!r} has no attribute 'Minimal.nope'",
    }
    for spec, problem in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_settings(plugin_config(workdir, f'{{ encoder = "{spec}", name = "v" }}'))
        assert problem in str(caught.value), spec


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("{}", "whose dim is None, not a positive int"),
        ("{ dim = true }", "whose dim is True, not a positive int"),
        ('{ dim = 4, signature = "" }', "whose signature is '', not a non-empty str"),
    ],
)
def test_a_plugin_breaking_the_contract_is_named(workdir: Path, options: str, problem: str) -> None:
    entry = f'{{ encoder = "{__name__}:NoDim", name = "v", options = {options} }}'
    with pytest.raises(ConfigError, match=r"dense\.models\[0\]\.encoder: ") as caught:
        load_settings(plugin_config(workdir, entry))
    assert f"{__name__}:NoDim built a 'NoDim' object, {problem}" in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (f'{{ encoder = "{PLUGIN}" }}', "`name` is required with `encoder`"),
        (
            f'{{ encoder = "{PLUGIN}", model = "m", name = "v" }}',
            "give exactly one of `model` and `encoder`",
        ),
        ('{ name = "v" }', "give exactly one of `model` and `encoder`"),
        ('{ model = "m", options = { a = 1 } }', "`options` go with `encoder`, not `model`"),
    ],
)
def test_model_and_encoder_go_alone(workdir: Path, entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(plugin_config(workdir, entry))
    assert f"dense.models[0].encoder: Value error, {problem}" in str(caught.value)


def test_connector_sync_and_search_with_a_plugin(workdir: Path, capsys) -> None:
    plugin_config(workdir)
    code, out, err = run(capsys, "sync", "--source", "corpus.jsonl", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["encoded"] == 40
    record = json.loads((workdir / "corpus.jsonl").read_text().splitlines()[4])
    text = f"{record['title']}\n{record['text']}"  # what the JSONL source makes of the record
    # The plug-in's vectors match exact texts only: a chunk's own text finds it first.
    code, out, err = run(capsys, "search", text, "--mode", "dense", "--json", "--limit", "1")
    assert code == 0, err
    hits = json.loads(out)
    assert [hit["chunk_id"] for hit in hits] == [record["_id"]]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_a_plugin_and_bm25_never_import_torch(workdir: Path) -> None:
    config = plugin_config(workdir)
    script = textwrap.dedent(
        f"""
        import sys
        from connector.chunks import ChunkRecord
        from connector.settings import load_settings
        from connector.sparse.generator import ModelRegistry, SparseVectorGenerator
        from connector.wiring import dense_encoders

        settings = load_settings({str(config)!r})
        (encoder,) = dense_encoders(settings)
        assert len(encoder.encode(["a text", "another"])) == 2
        assert len(encoder.encode_query("a query")) == 16
        records = [ChunkRecord(text="a text about wings", metadata={{}})]
        assert SparseVectorGenerator(ModelRegistry()).generate(records, "qdrant-bm25").success
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_rate_encoder_vectors_are_unit_deterministic_and_text_bound() -> None:
    encoder = RateEncoder(dim=32)
    first, second = encoder.encode(["alpha", "beta"])
    assert RateEncoder(dim=32, rate=1e6).encode(["alpha"]) == [first]
    assert encoder.encode_query("alpha") == first
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-5)
    assert abs(sum(a * b for a, b in zip(first, second, strict=True))) < 0.9
    assert encoder.encode([]) == []
    assert encoder.signature == "rate-encoder|dim=32" != RateEncoder(dim=16).signature


def test_rate_encoder_takes_its_time_per_chunk() -> None:
    encoder = RateEncoder(dim=8, rate=2000.0)
    start = time.perf_counter()
    encoder.encode(["x"] * 200)
    assert time.perf_counter() - start >= 0.1


def test_a_configured_batch_size_wins_over_the_plugins(workdir: Path) -> None:
    def encoder_of(entry: str) -> Settings:
        return load_settings(plugin_config(workdir, entry))

    from connector.wiring import dense_encoders

    own = encoder_of(f'{{ encoder = "{PLUGIN}", name = "v", options = {{ batch_size = 64 }} }}')
    set_ = encoder_of(f'{{ encoder = "{PLUGIN}", name = "v", batch_size = 8 }}')
    revised = encoder_of(f'{{ encoder = "{PLUGIN}", name = "v", revision = "2" }}')
    assert [getattr(e, "batch_size", None) for e in dense_encoders(own)] == [64]
    assert [getattr(e, "batch_size", None) for e in dense_encoders(set_)] == [8]
    assert [e.signature for e in dense_encoders(revised)] == ["rate-encoder|dim=384|rev=2"]
