"""Runs: the record a sync fills as it goes, and what is derived from it: the manifest each sync
leaves, its point in the runs collection, its live progress in the state folder; whether the
process that runs it is still there; and its lease on the source, which keeps a second sync of the
same source, from any host, out while it runs."""

from __future__ import annotations

from connector.runs._collection import RunStore, config_digest, mark_dead_runs
from connector.runs._lease import SyncLease
from connector.runs._process import process_alive, this_process
from connector.runs._recorder import RunRecorder
from connector.runs.live import LiveProgress, read_progress, write_progress
from connector.runs.manifest import (
    ProcessingSummary,
    SparseInferenceRun,
    iter_summaries,
    read_summary,
    summary_json_schema,
    summary_path,
    write_summary,
)
from connector.runs.record import Counts, DenseStats, ReadProgress, RunRecord, Skips, SparseStats

__all__ = [
    "Counts",
    "DenseStats",
    "LiveProgress",
    "ProcessingSummary",
    "ReadProgress",
    "RunRecord",
    "RunRecorder",
    "RunStore",
    "Skips",
    "SparseInferenceRun",
    "SparseStats",
    "SyncLease",
    "config_digest",
    "iter_summaries",
    "mark_dead_runs",
    "process_alive",
    "read_progress",
    "read_summary",
    "summary_json_schema",
    "summary_path",
    "this_process",
    "write_progress",
    "write_summary",
]
