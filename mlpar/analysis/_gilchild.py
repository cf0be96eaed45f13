"""One threads sweep of a comparison, in a child interpreter (``mlpar compare --gil``).

``python -m mlpar.analysis._gilchild RUN_DIR GROUP N_JOBS JOURNAL`` with ``PYTHON_GIL``
set by the parent: it reloads the run's resolved ``config.yaml``, takes
workload group GROUP, runs it on the threads backend with N_JOBS threads and
1 BLAS thread into JOURNAL, and prints one JSON line: the sweep's wall time
and whether the GIL was enabled. Same binary, same NumPy, same OpenBLAS: only
the GIL differs between PYTHON_GIL=0 and 1.
"""

import json
import sys
import time
from pathlib import Path


def main(argv):
    run_dir, group, n_jobs, journal = argv
    from ..config import load_config
    from ..environment import gil_enabled
    from ..experiment import sweep_config
    from ..runs import CONFIG_FILE
    from .compare import split_groups

    config = load_config(Path(run_dir) / CONFIG_FILE)
    groups = split_groups(config.search_space(), list(config.compare.group_by))
    _, space = groups[int(group)]
    t0 = time.perf_counter()
    sweep_config(
        config,
        space=space,
        journal=journal,
        progress=False,
        backend="threads",
        n_jobs=int(n_jobs),
        blas_threads=1,
    )
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_time": wall, "gil_enabled": gil_enabled()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
