"""One Ray cluster of two simulated nodes for every test of this folder (it takes seconds to
start): a head node with one CPU, and a node with one CPU and one GPU. Ray's resources are
logical, so actors are scheduled on the GPU node as they would be on a real one; with no CUDA
device there, the connector's models fall back to its CPU, as they would on a GPU that is busy."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.paths import REPO


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[str]:
    """The address of the two-node cluster, this process connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    # The nodes' worker processes import the tests' plug-in encoders.
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", include_dashboard=False)
    try:
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ["PYTHONPATH"] = path
