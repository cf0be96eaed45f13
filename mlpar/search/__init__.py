"""The search loop: sources decide what runs next, one loop runs it on any backend.

:func:`run_source` is the engine of :func:`mlpar.sweep`. A
:class:`Source` is asked for trials whenever workers are free and told every
final row: :class:`GridSource` is grid and random search; successive halving,
ASHA and model-based samplers are sources that decide from the rows.
"""

from ._run import RETRYABLE, callable_name, run_source
from ._source import GridSource, Source

__all__ = ["run_source", "Source", "GridSource", "callable_name", "RETRYABLE"]
