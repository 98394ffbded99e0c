"""A Ray run's spans: the actors' ``ray_window`` spans, and the model and write spans under them,
continue the driver's ``sync`` trace, exported by the actors to the configured collector."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from connector.settings import load_settings
from connector.store.edge import EdgeClient
from connector.wiring import build_syncer
from tests.connector.test_telemetry import InMemory, collector  # noqa: F401 (a fixture)

RATE = {"encoder": "connector.dense_plugins:RateEncoder", "name": "vec", "options": {"dim": 16}}


def test_the_actors_spans_continue_the_syncs_trace(
    workdir: Path,
    ray_cluster: str,
    collector: tuple[str, list[tuple[str, bytes]]],  # noqa: F811
) -> None:
    url, received = collector
    settings = load_settings(
        None,
        {
            "state_dir": str(workdir / "state"),
            "source": {"path": str(workdir / "corpus.jsonl"), "name": "docs"},
            "sync": {"batch_size": 8, "workers": 1},
            "dense": {"models": [RATE]},
            "sparse": {"model": "qdrant-bm25"},
            "gpu": {"enabled": True, "lease_timeout_s": 0.1},
            "compute": {"engine": "ray", "address": ray_cluster},
            "telemetry": {"exporter": "otlp", "endpoint": url},
        },
    )
    memory = InMemory()
    client = EdgeClient(workdir / "qdrant")
    with build_syncer(settings, client=client, telemetry=memory.telemetry) as job:
        record = job.run()
    (sync,) = [s for s in memory.finished() if s.name == "sync"]

    spans = []
    for path, body in received:
        if path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    spans.extend(scope.spans)
    windows = [s for s in spans if s.name == "ray_window"]
    # Five windows of the 40 chunks, each to the dense actor and to a sparse actor.
    assert len(windows) == 10
    trace_id = sync.context.trace_id.to_bytes(16, "big")
    assert {s.trace_id for s in spans} == {trace_id}
    assert {s.parent_span_id for s in windows} == {sync.context.span_id.to_bytes(8, "big")}
    by_id = {s.span_id: s.name for s in spans}
    dense = [s for s in spans if s.name == "dense"]
    sparse = [s for s in spans if s.name == "sparse_inference"]
    assert len(dense) == len(sparse) == 5
    assert {by_id[s.parent_span_id] for s in dense + sparse} == {"ray_window"}
    # Counts, names and devices only: no chunk text leaves an actor in a span.
    texts = [json.loads(line)["text"] for line in (workdir / "corpus.jsonl").open()]
    bodies = b"".join(body for _, body in received)
    assert not any(text[:40].encode() in bodies for text in texts)
    assert record.status == "succeeded"
