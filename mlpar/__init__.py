"""mlpar: parallel training of NumPy MLPs, and why one backend beats another."""

# Names are imported on first use (PEP 562): every worker process of a sweep
# imports mlpar, and eager imports of scikit-learn would add about a second to
# each worker's start-up even for trials that never touch it.
_API = {
    # Sweeps
    "sweep": "sweep",
    "SweepResult": "results",
    "train_mlp": "trial",
    "MLPTrial": "trial",
    "available_backends": "backends",
    "register_backend": "backends",
    "successive_halving": "halving",
    "HalvingResult": "halving",
    # Models
    "MLPClassifier": "nn",
    "MLPRegressor": "nn",
    # Configs
    "load_config": "config",
    "ConfigError": "config",
    # Analysis
    "advise": "analysis.advice",
    "Advice": "analysis.advice",
}

__version__ = "0.1.0"
__all__ = list(_API)

# The function, not the submodule of the same name: importing mlpar.sweep
# binds the module to this package's attribute, which would shadow the lazy
# lookup below. It imports NumPy and threadpoolctl, which every worker needs anyway.
from .sweep import sweep  # noqa: E402, F401


def __getattr__(name):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlpar' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
