"""Fixtures shared by the test modules: the data cache, a Dask cluster, a tiny config."""

import logging
import os

import pytest

# A tiny but real experiment: 4 trials on iris, a couple of epochs each.
TINY_CONFIG = """\
name: tiny
data: {dataset: iris}
model: {hidden: [8]}
train: {epochs: 3, batch_size: 16}
sweep:
  params: {lr: [0.001, 0.01], alpha: [0.0001, 0.001]}
execution: {backend: serial}
compare: {backends: [serial, threads], n_jobs: [2], repeats: 1}
output: {folder: OUT}
"""


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    # Point the data cache (mlpar.data.cache_dir) at a temporary folder for the
    # whole session, through os.environ so that worker processes inherit it:
    # the tests must never write into the home folder.
    old = os.environ.get("MLPAR_CACHE")
    os.environ["MLPAR_CACHE"] = str(tmp_path_factory.mktemp("mlpar_cache"))
    yield
    if old is None:
        os.environ.pop("MLPAR_CACHE", None)
    else:
        os.environ["MLPAR_CACHE"] = old


@pytest.fixture(scope="module")
def dask_address():
    """A loopback Dask cluster, one per test module, configured like a sweep's own.

    Two single-threaded worker processes; a task whose worker dies fails at
    once (``allowed_failures=0``) and workers take one task at a time, so a
    failure is blamed on exactly one trial.
    """
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    import dask

    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"allowed_failures": 0},
            silence_logs=logging.CRITICAL,
        )
    with cluster:
        yield cluster.scheduler_address


@pytest.fixture
def tiny(tmp_path):
    """A tiny YAML config (4 trials on iris) writing its runs under ``tmp_path/runs``."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.replace("OUT", str(tmp_path / "runs")))
    return path
