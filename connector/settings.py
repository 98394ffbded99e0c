"""One settings object, read once at start and passed down.

Precedence, lowest to highest: defaults, the TOML file (``--config PATH``, else ``./connector.toml``
when present), ``CONNECTOR_*`` environment variables (nested with ``__``), then CLI flags.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connector.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "Bm25Options",
    "Bm42Options",
    "ChunkingSettings",
    "ClusterSettings",
    "ComputeSettings",
    "DenseModelConfig",
    "DenseSettings",
    "GpuSettings",
    "IndexSettings",
    "QdrantSettings",
    "SearchSettings",
    "Settings",
    "SourceSettings",
    "SparseSettings",
    "SpladeOptions",
    "SyncSettings",
    "TelemetrySettings",
    "load_settings",
]

DEFAULT_CONFIG_FILE = Path("connector.toml")

_VECTOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Section(BaseModel):
    # A typo in a config key must fail loudly rather than be ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IndexSettings(_Section):
    """How the chunk collection is stored and indexed, on the edge engine and on a server.

    The defaults keep a million 384-d chunks under ~4 GB of memory with fast search: vectors and
    payloads stay on disk (memory-mapped), an int8 copy of each dense vector stays in RAM for the
    HNSW search, and the originals rescore the best candidates. qdrant-client's local engine
    has no index and ignores these: setting one with it is an error.
    """

    on_disk_vectors: bool = True
    """Keep the original dense vectors on disk (memory-mapped), not in RAM."""
    on_disk_payload: bool = True
    """Keep payloads on disk (memory-mapped), not in RAM."""
    m: int = Field(default=16, ge=0, le=128)
    """HNSW links per node: more is better recall, more memory and slower builds; 0: no graph."""
    ef_construct: int = Field(default=100, ge=4, le=4096)
    """HNSW candidates while building: more is better recall and slower builds."""
    hnsw_ef: int | None = Field(default=None, ge=1, le=65_536)
    """HNSW candidates per search: more is better recall and slower queries; default: Qdrant's."""
    quantization: Literal["int8", "none"] = "int8"
    """``int8``: a scalar-quantized copy of the dense vectors in RAM drives the search, and the
    originals rescore its best candidates (recall as without it); ``none``: the originals only."""
    deferred_build: bool = True
    """On a server, a first sync into an empty collection loads with the HNSW graph off
    (``m = 0``) and the server builds it once at the end, instead of growing it while loading.
    The edge engine never grows a graph while loading: it builds each segment's graph once, when
    the segment is full, so this changes nothing there."""
    max_segment_mb: int | None = Field(default=None, ge=1, le=1_048_576)
    """Largest segment Qdrant builds, in MB of vectors. Larger: fewer segments per search, more
    memory while one is built. Default: 128 on the edge engine (a first bulk load seals a
    segment each time it fills one, which bounds its memory); a server's own choice."""


class ClusterSettings(_Section):
    """How the collections the connector creates on a Qdrant server spread over its cluster.

    Sent when a collection is created (an existing one keeps its own: Qdrant moves shards and
    replicas with its own cluster API, not by recreating the collection); ``write_ordering`` goes
    with every write. Unset: the server's defaults. The embedded engines have no cluster:
    setting one with them is an error.
    """

    shard_number: int | None = Field(default=None, ge=1, le=65_536)
    """Shards of the chunk collection (a cluster's default: one per node). More shards than
    nodes lets later nodes take some; the runs collection keeps the server's default."""
    replication_factor: int | None = Field(default=None, ge=1, le=64)
    """Copies of each shard, on distinct nodes, in the chunk and runs collections (server's
    default: 1, no copy survives its node)."""
    write_consistency_factor: int | None = Field(default=None, ge=1, le=64)
    """Copies of a shard that must acknowledge a write before Qdrant answers (server's default:
    1). At most ``replication_factor``."""
    write_ordering: Literal["weak", "medium", "strong"] | None = None
    """Ordering of every write (upserts, vector and payload updates, deletes): ``weak`` (any
    replica, in any order), ``medium`` (through a shard's leader, while it is up), ``strong``
    (through the leader, failing without one). Unset: the server's default (weak). A sync writes
    each point once per run, so order matters only where several hosts write the same points."""

    @model_validator(mode="after")
    def _acknowledged_by_existing_copies(self) -> ClusterSettings:
        factor, copies = self.write_consistency_factor, self.replication_factor
        if factor is not None and copies is not None and factor > copies:
            raise ValueError(
                "write_consistency_factor must not exceed replication_factor (no write could "
                "be acknowledged by more copies than there are)"
            )
        return self


class QdrantSettings(_Section):
    """Where points go. With no ``url``, Qdrant runs embedded in a local folder."""

    url: str | None = None
    """Qdrant server URL, e.g. ``http://localhost:6333``. Unset: embedded mode in ``path``."""
    api_key: SecretStr | None = None
    """API key for a Qdrant server. Never logged or written anywhere."""
    path: Path | None = None
    """Folder of the embedded Qdrant. Default: ``qdrant/`` inside ``state_dir``."""
    engine: Literal["local", "edge"] = "edge"
    """Embedded engine: ``edge`` (Qdrant's engine in-process, ``qdrant-edge-py``: far faster
    writes and searches, points kept on disk) or ``local`` (qdrant-client's local mode: pure
    Python, every point in memory, for tests and small data). Not for a server. A folder written
    by ``local`` is not read by ``edge``: ``connector migrate --engine edge`` copies it."""
    collection: str = Field(default="chunks", min_length=1, max_length=255)
    """Collection that receives one point per chunk."""
    runs_collection: str = Field(default="connector_runs", min_length=1, max_length=255)
    """Payload-only collection holding one record (the manifest) per run."""
    prefer_grpc: bool = False
    """Talk gRPC to the server (port ``grpc_port``) instead of REST."""
    grpc_port: int = Field(default=6334, ge=1, le=65535)
    """gRPC port of the server."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of one request to Qdrant, in seconds."""
    upsert_batch_size: int = Field(default=128, ge=1, le=10_000)
    """Points per upsert request."""
    write_queue: int = Field(default=4, ge=1, le=64)
    """Upsert requests waiting while the next batch is encoded (bounds memory)."""
    retries: int = Field(default=3, ge=0, le=20)
    """Retries of a request that failed transiently (timeout, connection lost, 5xx)."""
    index: IndexSettings = Field(default_factory=IndexSettings)
    """Storage and index of the chunk collection (``[qdrant.index]``): edge engine and server."""
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    """Shards, replicas and write guarantees on a Qdrant cluster (``[qdrant.cluster]``): a server
    only."""

    @model_validator(mode="before")
    @classmethod
    def _collection_is_a_name(cls, data: Any) -> Any:
        # `qdrant.collection` names the chunk collection; a table there is cluster options put
        # under the wrong key, which would otherwise read as "not a valid string".
        if isinstance(data, dict) and isinstance(data.get("collection"), dict):
            raise ValueError(
                "qdrant.collection is the chunk collection's name; shard_number, "
                "replication_factor, write_consistency_factor and write_ordering go in "
                "[qdrant.cluster]"
            )
        return data

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value

    @property
    def indexed(self) -> bool:
        """Whether this Qdrant keeps an index (``index`` applies): a server or the edge engine."""
        return self.url is not None or self.engine == "edge"

    @model_validator(mode="after")
    def _index_needs_an_index(self) -> QdrantSettings:
        # A silently ignored setting would let a user believe the store is tuned.
        if not self.indexed and self.index.model_fields_set:
            keys = ", ".join(sorted(self.index.model_fields_set))
            raise ValueError(
                f"qdrant.index ({keys}) applies to the edge engine and a server; the local "
                'engine has no index and ignores it (set engine = "edge", or drop these keys)'
            )
        if self.url is None and self.cluster.model_fields_set:
            keys = ", ".join(sorted(self.cluster.model_fields_set))
            raise ValueError(
                f"qdrant.cluster ({keys}) applies to a Qdrant server; the embedded {self.engine} "
                "engine has no shards, replicas or write ordering (set qdrant.url, or drop these "
                "keys)"
            )
        return self


class DenseModelConfig(_Section):
    """One dense model of the ensemble; each gives one named vector.

    Either ``model`` (a sentence-transformers model) or ``encoder`` (a plug-in: any object meeting
    :class:`connector.dense.DenseEncoder`, built by ``Factory(**options)``), never both.
    """

    model: str | None = Field(default=None, min_length=1)
    """Local path or Hugging Face hub id of a sentence-transformers model."""
    name: str | None = None
    """Name of the vector in Qdrant. Default: derived from the model's name; required with
    ``encoder``."""
    revision: str | None = None
    """Bump this to re-encode every chunk after replacing the weights at the same path."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    """Texts per forward pass (a plug-in's own ``batch_size`` wins unless this is set)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the plug-in's factory (plain TOML values)."""
    encoder: str | None = Field(default=None, validate_default=True)
    """A plug-in encoder's factory, ``"package.module:Factory"``, imported by name so that any
    process can build it. Checked when the settings are read: the factory is called once there."""

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str | None) -> str | None:
        if value is not None and not _VECTOR_NAME.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-'")
        return value

    @field_validator("encoder")
    @classmethod
    def _model_or_encoder(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Declared last, so that the other keys are at hand (those that passed their own checks);
        # a bad plug-in fails here, at start, with this key in the message, not mid-sync.
        given = info.data
        if not {"model", "name", "options"} <= given.keys():
            return value  # their own errors say what is wrong
        if (given["model"] is None) == (value is None):
            raise ValueError("give exactly one of `model` and `encoder`")
        if value is None:
            if given["options"]:
                raise ValueError("`options` go with `encoder`, not `model`")
            return value
        if given["name"] is None:
            raise ValueError("`name` is required with `encoder`")
        from connector.dense import build_plugin

        build_plugin(value, given["options"])
        return value


class DenseSettings(_Section):
    """The dense ensemble."""

    models: list[DenseModelConfig] = Field(
        default_factory=lambda: [DenseModelConfig(model="all-MiniLM-L6-v2")], min_length=1
    )
    """Models of the ensemble, as strings or tables (``{model=..., name=...}`` or
    ``{encoder="package.module:Factory", name=..., options={...}}``)."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Weights of sentence-transformers models on a GPU; on the CPU they stay fp32. Recorded in
    the model's signature when not fp32 (changing it re-encodes)."""

    @field_validator("models", mode="before")
    @classmethod
    def _strings_to_tables(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"model": item} if isinstance(item, str) else item for item in value]
        return value


class Bm25Options(_Section):
    """Options of the BM25 sparse model; the defaults equal fastembed's ``Qdrant/bm25``."""

    k: float = Field(default=1.2, ge=0)
    """Term-frequency saturation."""
    b: float = Field(default=0.75, ge=0, le=1)
    """Document-length normalisation."""
    avg_len: Annotated[float, Field(gt=0)] | Literal["auto"] = 256.0
    """Average document length in kept tokens. ``"auto"``: measured over the source by the first
    sync into the collection, recorded there, and reused by later syncs."""
    language: str = "english"
    """Snowball stemmer language (stopwords are bundled for English)."""


class Bm42Options(_Section):
    """Options of the BM42 sparse model (``qdrant-minilm-attention``)."""

    model: str = "all-MiniLM-L6-v2"
    """Model whose last-layer [CLS] attention gives the weights (local path or hub id)."""


class SpladeOptions(_Section):
    """Options of the ``splade`` sparse model."""

    model: str | None = None
    """SPLADE checkpoint: local path or hub id. Required when ``sparse.model = "splade"``."""
    max_length: int | None = Field(default=None, ge=8, le=8192)
    """Tokens per text; default: the checkpoint's own limit."""


class SparseSettings(_Section):
    """The sparse model."""

    enabled: bool = True
    """Compute a sparse vector for every chunk (the persisted switch, when set, wins)."""
    model: str = "qdrant-bm25"
    """Sparse model name (see ``connector.sparse.SPARSE_MODEL_REGISTRY``)."""
    vector_name: str | None = None
    """Name of the sparse vector in Qdrant. Default: the model name."""
    bm25: Bm25Options = Field(default_factory=Bm25Options)
    """Options of ``qdrant-bm25`` and ``qdrant-bm25-engine``."""
    bm42: Bm42Options = Field(default_factory=Bm42Options)
    """Options of ``qdrant-minilm-attention``."""
    splade: SpladeOptions = Field(default_factory=SpladeOptions)
    """Options of ``splade``."""


class GpuSettings(_Section):
    """GPU use of the dense and sparse stages: leases, VRAM caps, adaptive batches."""

    enabled: bool = False
    """Run models on a leased GPU when one is free (BM25 always runs on the CPU)."""
    device_ids: list[NonNegativeInt] | None = Field(default=None, min_length=1)
    """GPUs that may be leased, as ``nvidia-smi`` numbers them. Default: any."""
    vram_hard_cap_gb: float = Field(default=12.0, gt=0)
    """GiB this process may allocate on a leased GPU; past it, allocations fail (then halve)."""
    vram_soft_limit_gb: float = Field(default=10.0, gt=0)
    """GiB of peak use after which the next batch halves."""
    min_batch_size: int = Field(default=4, ge=1, le=4096)
    """Smallest batch tried on a GPU; one failing at this size runs on the CPU."""
    lease_timeout_s: float = Field(default=10.0, ge=0)
    """Seconds to wait for a busy GPU before running on the CPU."""
    idle_release_s: float = Field(default=2.0, ge=0)
    """Seconds a leased GPU may sit unused before it is given back (``0``: after every window).
    Until then the lease and the resident model stay, so a sync leases and hydrates once."""

    @model_validator(mode="after")
    def _soft_below_hard(self) -> GpuSettings:
        if self.vram_soft_limit_gb > self.vram_hard_cap_gb:
            raise ValueError("vram_soft_limit_gb must not exceed vram_hard_cap_gb")
        return self


class SourceSettings(_Section):
    """Where chunks come from."""

    path: str | None = None
    """Default source of ``connector sync``: JSONL file, folder, or http(s) URL."""
    name: str | None = None
    """Stable name of the source in point ids. Default: its absolute path or URL."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of an HTTP source, in seconds."""
    retries: int = Field(default=3, ge=0, le=20)
    """Retries of an HTTP source that failed to answer."""
    max_line_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Longest JSONL line read; longer lines are skipped and reported."""
    id_field: str = Field(default="id", min_length=1)
    """Column of a Parquet or CSV source holding each row's id."""
    text_field: str = Field(default="text", min_length=1)
    """Column of a Parquet or CSV source holding each row's text."""
    metadata_fields: tuple[str, ...] = ()
    """Columns of a Parquet or CSV source copied into each point's payload."""

    @model_validator(mode="before")
    @classmethod
    def _chunks_counted_in_tokens(cls, data: Any) -> Any:
        # Chunks were once cut by characters: an old setting would silently mean nothing now.
        old = sorted(
            k for k in ("chunk_size", "chunk_overlap") if isinstance(data, dict) and k in data
        )
        if old:
            raise ValueError(
                f"{', '.join(old)}: chunks are now counted in the dense model's tokens; use "
                "chunking.max_tokens and chunking.overlap_tokens"
            )
        return data


class ChunkingSettings(_Section):
    """How documents and long records are cut into chunks, in the dense model's own tokens."""

    max_tokens: int | None = Field(default=None, ge=8)
    """Most tokens per chunk (special tokens excluded). Default: the smallest window of the dense
    ensemble (``max_seq_length`` less [CLS]/[SEP]: 254 for all-MiniLM-L6-v2); larger is an
    error. With plug-in encoders only, the bundled all-MiniLM-L6-v2's window."""
    overlap_tokens: int = Field(default=32, ge=0)
    """Most tokens shared by consecutive chunks of one document (whole sentences or words)."""
    split_records: bool = True
    """Chunk JSONL and table records longer than ``max_tokens``; ``false`` for sources whose
    records are chunks already."""
    tokenizer: str | None = Field(default=None, min_length=1)
    """Model (folder or hub id) whose tokenizer counts. Default: the smallest-window model's."""

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.max_tokens is not None and self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class SyncSettings(_Section):
    """How a sync runs."""

    batch_size: int = Field(default=256, ge=1, le=100_000)
    """Chunks read, compared and encoded together."""
    strict: bool = False
    """Fail on the first malformed record or repeated id instead of skipping and reporting it."""
    max_delete_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    """Largest share of a source's stored points one run may delete."""
    allow_mass_delete: bool = False
    """Let a run delete more than ``max_delete_fraction`` (an empty read included)."""
    workers: int | None = Field(default=None, ge=1, le=256)
    """Processes that take a sync's CPU work (1: all in the sync's process). Default: one per
    core the process may use but one (up to 16; the sync's own process needs a core), or 1 for
    a source under 8 MiB, where starting them costs more than they save."""
    lease_ttl_s: float = Field(default=60.0, gt=0, le=86_400)
    """How long a sync's lease on (collection, source) in the runs collection holds without
    being renewed: a run renews it every third of this; a run whose process died (on another
    host, where its pid cannot be checked) keeps others out this long."""
    lease_settle_s: float = Field(default=0.5, ge=0, le=60)
    """Against a server, how long a sync waits after writing its claim on the lease before
    reading it back: of two claims that cross, the later one wins and the other run stops."""


class ComputeSettings(_Section):
    """Where a sync's encoding runs: this process (and its workers), or a Ray cluster."""

    engine: Literal["local", "ray"] = "local"
    """``ray``: the dense and sparse models run as Ray actors across a cluster (the ``ray``
    extra); this process still reads the source, plans, deletes and records the run."""
    address: str = "auto"
    """The Ray cluster: ``auto`` (the one this machine joined, ``ray start``, or
    ``RAY_ADDRESS``), ``host:port`` or ``ray://host:10001``, or ``local`` (a Ray of this machine
    alone, started for the run)."""
    gpu_actors: int | None = Field(default=None, ge=0, le=4096)
    """Actors holding one GPU each (they run the dense models). Default: one per GPU of the
    cluster."""
    cpu_actors: int | None = Field(default=None, ge=1, le=4096)
    """Actors holding one CPU each: the sparse model when it runs on the CPU, and the dense
    models too where the cluster has no GPU. Default: one per CPU of the cluster (at most
    64)."""
    in_flight: int = Field(default=2, ge=1, le=64)
    """Windows sent to one actor before its first comes back: enough to keep it busy while a
    window travels, few enough to keep memory flat."""
    max_restarts: int = Field(default=2, ge=0, le=100)
    """Times Ray restarts an actor whose process died (its windows are sent again); past
    that, the run fails and deletes nothing."""
    start_timeout_s: float = Field(default=600.0, gt=0)
    """How long the run's actors may take to be placed on the cluster and load their models;
    past it the run fails in one line (the cluster's resources are taken by other work)."""


class TelemetrySettings(_Section):
    """OpenTelemetry traces and metrics of syncs."""

    exporter: Literal["none", "console", "otlp"] = "none"
    """Where spans and metrics go: nowhere, stderr, or an OTLP/HTTP collector."""
    endpoint: str | None = None
    """Base URL of the OTLP collector. Default: ``OTEL_EXPORTER_OTLP_*`` variables, else
    ``http://localhost:4318``."""
    service_name: str | None = None
    """``service.name`` of the resource. Default: ``OTEL_SERVICE_NAME``, else
    ``qdrant-hybrid-connector``."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value


class SearchSettings(_Section):
    """How ``connector search`` queries the collection."""

    fusion: Literal["dbsf", "rrf"] = "dbsf"
    """How hybrid hit lists merge: ``dbsf`` (scores normalised by their spread, then summed) or
    ``rrf`` (reciprocal rank; Qdrant's constant k = 2)."""
    candidates: int = Field(default=100, ge=1, le=10_000)
    """Hits each vector contributes before fusion."""
    feedback_docs: int = Field(default=0, ge=0, le=100)
    """Dense pseudo-relevance feedback: the first N hits' dense vectors refine the query, which
    then runs again. 0: off."""
    feedback_weight: float = Field(default=0.5, ge=0, le=10)
    """Weight of those hits' mean vector added to the query's."""


class Settings(BaseSettings):
    """Every setting of the connector."""

    model_config = SettingsConfigDict(
        env_prefix="CONNECTOR_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    state_dir: Path = Path(".connector")
    """Folder for run manifests, leases and runtime settings (and the embedded Qdrant)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """Level of log lines on stderr."""
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    dense: DenseSettings = Field(default_factory=DenseSettings)
    sparse: SparseSettings = Field(default_factory=SparseSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    search: SearchSettings = Field(default_factory=SearchSettings)

    @property
    def qdrant_path(self) -> Path:
        """Folder of the embedded Qdrant."""
        return self.qdrant.path if self.qdrant.path is not None else self.state_dir / "qdrant"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(
    config_path: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the settings from file, environment and overrides.

    Args:
        config_path: TOML file to read. ``None`` reads ``./connector.toml`` when it exists.
        overrides: Values from CLI flags, nested like the file (``{"qdrant": {...}}``).

    Raises:
        ConfigError: The file is missing or unreadable, or a value is bad (the message names
            the key).
    """
    path: Path | None
    if config_path is None:
        path = DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None
    else:
        path = Path(config_path)
        if not path.is_file():
            raise ConfigError(f"config file {path}: not found")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        settings = _FromFile(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except ValueError as exc:  # a TOML syntax error surfaces as tomllib.TOMLDecodeError
        raise ConfigError(f"config file {path}: {exc}") from None
    # Hand back the plain class so nothing downstream depends on how it was read.
    return Settings.model_construct(**dict(settings))


def _key(loc: tuple[int | str, ...]) -> str:
    """``dense.models[0].encoder`` from pydantic's ``("dense", "models", 0, "encoder")``.

    An index inside the key (a table in a list) is written as TOML readers know it; an item of a
    list of values keeps its dotted form (``gpu.device_ids.0``), as earlier messages gave it.
    """
    key = ""
    for at, part in enumerate(loc):
        if isinstance(part, int) and at < len(loc) - 1:
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key or "(root)"


def _describe(exc: ValidationError, path: Path | None) -> str:
    """One readable line per bad key, without echoing secret values."""
    lines = []
    for error in exc.errors():
        key = _key(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{key}: {message}")
    where = f" (file {path}, environment CONNECTOR_*, flags)" if path else ""
    return "bad configuration" + where + ": " + "; ".join(lines)
