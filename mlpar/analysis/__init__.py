"""Why one backend beats another: the GIL/BLAS model, advice, backend comparisons.

Data in, data out: these functions run calibrations and sweeps and return
what they measured; presenting it is :mod:`mlpar.report`'s and the CLI's job.

- :mod:`.gilmodel`: the GIL-free fraction ``p`` of a training step, GIL hand-off
  costs, and the thread speedup they predict.
- :mod:`.advice`: which backend, n_jobs and blas_threads pay for a workload.
- :mod:`.compare`: the same sweep under several backends, measured.
- :mod:`.summary`: a comparison's medians and tables, from its records alone.
"""
