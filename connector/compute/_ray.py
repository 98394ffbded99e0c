"""A sync's encoding on a Ray cluster: actors with the connector's own stages, fed by the driver.

The driver (the ``connector sync`` process) reads the source and plans each window against the
store, as a local sync does; it cannot hand that to Ray Data: what a window needs depends on the
points already stored and on every chunk claimed before it, so the stream exists only in the
driver. Each planned window is put in Ray's object store once and sent to the least busy actor of
each role: one per GPU running the dense models (``num_gpus=1``), and CPU actors running the
sparse model, spread over the nodes. Windows come back in order, a few per actor in flight, so
the actors stay busy while the driver plans the next ones and writes the last ones.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector import __version__
from connector.compute._actor import (
    ActorReport,
    EncodeActor,
    Encoded,
    Role,
    WriteTarget,
    add_counts,
    merge,
)
from connector.errors import ComputeError, ConfigError, ConnectorError
from connector.pipeline._plan import Window
from connector.runs.live import ActorProgress
from connector.runs.manifest import ComputeSection, DeviceUsage, NodeUsage
from connector.sources._reading import FileChunks, load_file
from connector.telemetry import trace_carrier

if TYPE_CHECKING:
    from connector.chunking import TokenChunker
    from connector.runs.record import RunRecord
    from connector.settings import Settings

__all__ = ["RayCompute", "RayRun", "import_ray"]

INSTALL_HINT = 'pip install "qdrant-hybrid-connector[ray]"'
_MAX_CPU_ACTORS = 64
_CONNECT_S = 5.0
"""How long the head node of a ``HOST:PORT`` address may take to accept a connection."""
_CLOSE_S = 10.0
"""How long the actors of a run that ended may take to close."""


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f'compute.engine = "ray" (--ray) needs Ray, which is not installed: {INSTALL_HINT}'
        ) from None
    return ray


@dataclass(frozen=True, slots=True)
class _Pool:
    """The actors of one role and what each holds."""

    role: Role
    gpus: int
    count: int


class RayCompute:
    """Where a sync's windows are encoded when ``compute.engine = "ray"``.

    Args:
        settings: The models, the ``gpu`` and ``compute`` sections.
        sparse: Whether the run computes sparse vectors.
        sparse_on_gpu: Whether the sparse model runs on a GPU (SPLADE, BM42 with the GPU on):
            then the GPU actors run it after the dense models, instead of CPU actors.
        avg_len: BM25's ``avg_len`` as resolved for the run.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sparse: bool,
        sparse_on_gpu: bool = False,
        avg_len: float | None = None,
    ) -> None:
        self.settings = settings
        self.sparse = sparse
        self.sparse_on_gpu = sparse_on_gpu
        self.avg_len = avg_len

    @property
    def actors_write(self) -> bool:
        """Whether the actors write the points (to a Qdrant server) instead of the driver
        (the one process that may open an embedded store)."""
        return self.settings.qdrant.url is not None

    @contextmanager
    def run(
        self, record: RunRecord, signatures: dict[str, str], dense_names: list[str]
    ) -> Iterator[RayRun]:
        """Connects to the cluster and starts the run's actors; they are stopped (and a Ray
        started for the run shut down) when the block ends, however it ends.

        Args:
            record: The run's record: its ``cluster`` and ``actors`` follow the actors' reports.
            signatures: What the driver's models write, per vector name: every actor must
                write the same.
            dense_names: The dense vectors, in the ensemble's order.

        Raises:
            ComputeError: The cluster cannot be reached, lacks the resources asked for, or an
                actor computes other vectors than the driver would.
        """
        ray = import_ray()
        started = _connect(ray, self.settings.compute.address)
        actors: list[Any] = []
        try:
            pools = self._pools(ray.cluster_resources(), bool(dense_names))
            actors = self._start(ray, pools)
            compute = self.settings.compute
            target = None
            if self.actors_write:
                target = WriteTarget(
                    record.run_id, record.source, record.collection, signatures, dense_names
                )
            run = RayRun(
                ray,
                record,
                actors,
                compute.in_flight,
                compute.max_restarts,
                target,
                start_s=compute.start_timeout_s,
            )
            run.check(signatures)
            yield run
        finally:
            _stop(ray, actors)
            if started:
                ray.shutdown()

    def _pools(self, resources: dict[str, float], dense: bool) -> list[_Pool]:
        compute = self.settings.compute
        gpus_there = int(resources.get("GPU", 0))
        cpus_there = int(resources.get("CPU", 0))
        gpu_actors = compute.gpu_actors
        if gpu_actors is None:
            gpu_actors = gpus_there if self.settings.gpu.enabled else 0
        if gpu_actors > gpus_there:
            raise ComputeError(
                f"compute.gpu_actors = {gpu_actors}, but the Ray cluster has {gpus_there} GPUs"
            )
        cpu_actors = compute.cpu_actors or min(_MAX_CPU_ACTORS, max(1, cpus_there))
        if compute.cpu_actors is not None and cpu_actors > cpus_there:
            raise ComputeError(
                f"compute.cpu_actors = {cpu_actors}, but the Ray cluster has {cpus_there} CPUs"
            )
        pools: list[_Pool] = []
        if gpu_actors and (dense or self.sparse_on_gpu):
            gpu_role: Role = "encode" if self.sparse_on_gpu else "dense"
            pools.append(_Pool(gpu_role, 1, gpu_actors))
            if self.sparse and not self.sparse_on_gpu:
                pools.append(_Pool("sparse", 0, cpu_actors))
                if self.actors_write:
                    # Writers join each window's two halves: one per GPU actor keeps up with it.
                    pools.append(_Pool("write", 0, gpu_actors))
        else:
            pools.append(_Pool("encode", 0, cpu_actors))
        return pools

    def _start(self, ray: Any, pools: list[_Pool]) -> list[Any]:
        compute = self.settings.compute
        remote = ray.remote(_RayActor)
        actors: list[Any] = []
        for pool in pools:
            for _ in range(pool.count):
                options: dict[str, Any] = {
                    "num_gpus": pool.gpus,
                    # A GPU actor mostly waits on its device, a writer on Qdrant: neither takes
                    # a CPU from the actors that compute.
                    "num_cpus": 0 if pool.gpus or pool.role == "write" else 1,
                    "max_restarts": compute.max_restarts,
                    "max_task_retries": compute.max_restarts,
                }
                if not pool.gpus:
                    options["scheduling_strategy"] = "SPREAD"
                actors.append(
                    remote.options(**options).remote(
                        self.settings,
                        pool.role,
                        len(actors),
                        sparse=self.sparse,
                        avg_len=self.avg_len,
                    )
                )
        return actors


class _RayActor(EncodeActor):
    """An :class:`EncodeActor` that names its node by Ray's account and holds Ray's GPU."""

    def __init__(self, settings: Settings, role: Role, index: int, **options: Any) -> None:
        import ray

        context = ray.get_runtime_context()
        node = f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"
        gpu_ids = [int(i) for i in ray.get_gpu_ids()]
        if gpu_ids:
            # The lease is taken on the GPU Ray gave this actor (NVML numbering), no other.
            gpu = settings.gpu.model_copy(update={"device_ids": gpu_ids})
            settings = settings.model_copy(update={"gpu": gpu})
        super().__init__(settings, role, index, node=node, **options)


class RayRun:
    """The actors of one run: windows go out in one stage of the sync and come back in the next.

    Args:
        ray: The ``ray`` module.
        record: The run's record (its ``cluster`` and ``actors``).
        actors: The run's actors, index order.
        in_flight: Windows one actor may hold at once.
        max_restarts: Times Ray restarts a dead actor (named when it gives up).
        target: Where the actors write the points; ``None``: the driver writes them.
        start_s: How long the actors may take to be placed and load their models.
    """

    def __init__(
        self,
        ray: Any,
        record: RunRecord,
        actors: list[Any],
        in_flight: int,
        max_restarts: int,
        target: WriteTarget | None = None,
        start_s: float = 600.0,
    ) -> None:
        self.ray = ray
        self.target = target
        self.start_s = start_s
        self.record = record
        self.actors = actors
        self.in_flight = in_flight
        self.max_restarts = max_restarts
        self._lock = threading.Lock()
        self._load = [0] * len(actors)
        self._given = [0] * len(actors)
        self._roles: list[Role] = []
        self._per_role: dict[str, int] = {}
        self._reports: dict[int, ActorReport] = {}
        self._pending: dict[int, list[tuple[int, Any]]] = {}
        self._sent: dict[int, list[int]] = {}  # window -> the actors it went to

    @property
    def depth(self) -> int:
        """Windows that may wait between two stages: every actor of the largest role busy."""
        return self.in_flight * max(self._per_role.values(), default=1)

    def check(self, signatures: dict[str, str]) -> None:
        """Waits for every actor to start and checks it computes what the driver would.

        Raises:
            ComputeError: An actor could not start, runs another connector version, or its
                models write other vectors.
        """
        try:
            ready = self.ray.get([a.ready.remote() for a in self.actors], timeout=self.start_s)
        except self.ray.exceptions.GetTimeoutError as exc:
            raise ComputeError(
                f"the run's {len(self.actors)} Ray actors did not all start within "
                f"{self.start_s:g} s (compute.start_timeout_s): the cluster's CPUs or GPUs are "
                "taken by other work (see `ray status`; set compute.gpu_actors / cpu_actors "
                "lower), or loading the models takes longer"
            ) from exc
        except Exception as exc:
            raise ComputeError(f"a Ray actor of the run could not start: {_cause(exc)}") from exc
        for index, info in enumerate(ready):
            node = info["node"]
            if info["version"] != __version__:
                raise ComputeError(
                    f"node {node} runs connector {info['version']}, this process {__version__}: "
                    "install the same version on every node of the Ray cluster"
                )
            for name, signature in info["signatures"].items():
                if signatures.get(name) != signature:
                    raise ComputeError(
                        f"node {node} computes vector {name} as {signature}, this process as "
                        f"{signatures.get(name)}: install the same models and settings on every "
                        "node"
                    )
            role: Role = info["role"]
            self._roles.append(role)
            self._per_role[role] = self._per_role.get(role, 0) + 1
            self._reports[index] = ActorReport(index, role, node, "cpu", None, 0, 0.0)
        self._publish()

    def submit(self, window: Window) -> Window:
        """Sends the window to one actor of each role (the least busy); returns at once."""
        if not any(window.needs.values()):
            return window
        ref = self.ray.put(window)
        roles = list(dict.fromkeys(self._roles))
        with self._lock:
            chosen = {role: self._least_busy(role) for role in roles}
        target = self.target
        # The actors' spans of this window continue the sync's trace.
        trace = trace_carrier()
        if "write" in chosen:
            # Both halves go to a writer, which waits for them, joins them and writes.
            halves = [self._call(chosen[r], ref, trace=trace) for r in roles if r != "write"]
            joined = [c for _, c in halves]
            calls = [self._call(chosen["write"], ref, *joined, target=target, trace=trace)]
        elif len(roles) == 1:
            calls = [self._call(chosen[roles[0]], ref, target=target, trace=trace)]
        else:
            calls = [self._call(chosen[role], ref, trace=trace) for role in roles]
        self._sent[id(window)] = list(chosen.values())
        self._pending[id(window)] = calls
        return window

    def collect(self, window: Window) -> Window:
        """Waits for the window's vectors (windows come back in the order they went out)."""
        calls = self._pending.pop(id(window), None)
        if calls is None:
            return window
        try:
            parts: list[Encoded] = self.ray.get([ref for _, ref in calls])
        except Exception as exc:
            raise self._failure(calls, exc) from exc
        finally:
            with self._lock:
                for index in self._sent.pop(id(window), []):
                    self._load[index] -= 1
        for part in parts:
            merge(window, part)
            for report in part.reports:
                self._reports[report.index] = report
            if part.written is not None:
                add_counts(self.record.writes, part.written)
                window.written = True
        self._publish()
        return window

    @contextmanager
    def reading(self, source: object) -> Iterator[None]:
        """While the block runs, a folder source's files are read and cut by the run's CPU
        actors (the driver reads each file's bytes, an actor parses and chunks them); other
        sources read as they always do."""
        if not hasattr(source, "cutter"):
            yield
            return
        source.cutter = self.cut_files
        try:
            yield
        finally:
            source.cutter = None

    def cut_files(
        self, chunker: TokenChunker, files: Sequence[tuple[Path, str]]
    ) -> Generator[FileChunks, None, None]:
        """Each of ``files`` (path, document id) read and cut by the actors, in order, a few
        files per actor in flight (see :class:`connector.sources.FolderSource`'s ``cutter``).

        Raises:
            ComputeError: Ray lost an actor more often than it may restart it.
        """
        cpu = [i for i, role in enumerate(self._roles) if role in ("sparse", "encode")]
        readers = cpu or list(range(len(self.actors)))
        chunker_ref = self.ray.put(chunker)
        self.ray.get([self.actors[i].take_chunker.remote(chunker_ref) for i in readers])
        turn = itertools.cycle(readers)

        def send(path: Path, relative: str) -> FileChunks | Any:
            data = load_file(path)
            if isinstance(data, FileChunks):
                return data  # not readable here: no actor needed to say so
            return self.actors[next(turn)].cut.remote(data, path.suffix, str(path), relative)

        upcoming = iter(files)
        first = itertools.islice(upcoming, self.in_flight * len(readers))
        pending = deque(send(*item) for item in first)
        while pending:
            head = pending.popleft()
            if not isinstance(head, FileChunks):
                try:
                    head = self.ray.get(head)
                except Exception as exc:
                    raise ComputeError(
                        f"Ray lost the run's work (reading a file; an actor is restarted up to "
                        f"{self.max_restarts} times, compute.max_restarts): {_cause(exc)}"
                    ) from exc
            following = next(upcoming, None)
            if following is not None:
                pending.append(send(*following))
            yield head
        for report in self.ray.get([self.actors[i].report.remote() for i in readers]):
            self._reports[report.index] = report
        self._publish()

    def _least_busy(self, role: Role) -> int:
        """The actor of ``role`` with the fewest windows in flight; of those, the one given the
        fewest so far (a fast actor, idle again at every window, must not get them all)."""
        index = min(
            (i for i, r in enumerate(self._roles) if r == role),
            key=lambda i: (self._load[i], self._given[i]),
        )
        self._load[index] += 1
        self._given[index] += 1
        return index

    def _call(
        self,
        index: int,
        *args: Any,
        target: WriteTarget | None = None,
        trace: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        return index, self.actors[index].encode.remote(*args, target=target, trace=trace)

    def _failure(self, calls: Sequence[tuple[int, Any]], exc: Exception) -> Exception:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ConnectorError):
            return cause  # a model or a setting failed in the actor as it would here
        roles = ", ".join(f"{self._roles[i]} actor {i}" for i, _ in calls)
        return ComputeError(
            f"Ray lost the run's work ({roles}; an actor is restarted up to "
            f"{self.max_restarts} times, compute.max_restarts): {_cause(exc)}; nothing was "
            "deleted, and the next run encodes only what this one did not write"
        )

    def _publish(self) -> None:
        """The actors' latest reports into the run's record (progress.json, the manifest)."""
        reports = [self._reports[i] for i in sorted(self._reports)]
        self.record.actors = [
            ActorProgress(
                node=r.node,
                role=r.role,
                device=r.device,
                batch_size=r.batch_size,
                chunks=r.chunks,
                files=r.files,
                chunks_per_s=round(r.chunks / r.busy_s, 3) if r.busy_s > 0 else None,
            )
            for r in reports
        ]
        dense = {r.device for r in reports if r.role in ("dense", "encode")}
        if dense:
            self.record.dense.device = ",".join(sorted(dense))
        nodes: dict[str, list[ActorReport]] = {}
        for report in reports:
            nodes.setdefault(report.node, []).append(report)
        self.record.cluster = ComputeSection(
            engine="ray",
            nodes=len(nodes),
            workers=len(reports),
            per_node=[
                NodeUsage(
                    node=node,
                    workers=len(on),
                    chunks=sum(r.chunks for r in on if r.role != "write"),
                    devices=sorted({d for r in on for d in r.device.split(",")}),
                    gpus=[DeviceUsage.model_validate(u) for r in on for u in r.devices],
                )
                for node, on in sorted(nodes.items())
            ],
        )


def _stop(ray: Any, actors: list[Any]) -> None:
    """Lets each actor give back its GPU and export its spans, then ends it (one that does not
    answer in time, or died, is ended all the same)."""
    closing = [actor.close.remote() for actor in actors]
    ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_S)
    for actor in actors:
        ray.kill(actor, no_restart=True)


def _connect(ray: Any, address: str) -> bool:
    """Joins the cluster at ``address`` (or a Ray of this machine, ``local``); whether this
    process started it (then it shuts it down after the run).

    Raises:
        ComputeError: No cluster answers at ``address``.
    """
    _answers(address)
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
    try:
        if address == "local":
            ray.init(**options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ComputeError(
            f"no Ray cluster at compute.address = {address!r}: {exc} (start one with "
            "`ray start --head`, pass its address with --ray HOST:PORT, or use --ray local)"
        ) from exc
    return True


def _answers(address: str) -> None:
    """Fails at once when nothing listens at a ``HOST:PORT`` address: Ray itself would wait
    minutes for a cluster there before it gives up.

    Raises:
        ComputeError: The connection is refused or times out.
    """
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return  # "auto" or "local": Ray finds (or starts) the cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_S).close()
    except OSError as exc:
        raise ComputeError(
            f"no Ray cluster answers at compute.address = {address!r} "
            f"({exc.strerror or type(exc).__name__}): check the head node's address and port "
            "(`ray status` on the head), or use --ray local"
        ) from None


def _cause(exc: BaseException) -> str:
    """The first line of what went wrong in Ray, without Ray's traceback."""
    text = str(getattr(exc, "cause", None) or exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
