"""Adaptive search with Optuna's samplers, run by mlpar's search loop.

:class:`SamplerSource` is a :class:`~mlpar.search.Source` doing parallel
ask-and-tell: ``n_jobs`` trials in flight, one ``study.ask()`` per free
worker, one ``study.tell()`` per final row. Optuna is imported only here, and
only when a sampler is used (``pip install 'mlpar[optuna]'``).
"""

from ._source import SAMPLERS, SamplerSource, make_sampler

__all__ = ["SamplerSource", "make_sampler", "SAMPLERS"]
