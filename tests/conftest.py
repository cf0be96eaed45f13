import os

import pytest


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
