"""What the numbers were measured on: cores, BLAS, Python build, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import sysconfig

__all__ = ["environment_info", "gil_enabled", "free_threaded_build", "format_environment"]


def free_threaded_build() -> bool:
    """True on a free-threaded CPython build (3.13t and later)."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Whether the GIL is enabled right now (always True before CPython 3.13)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _blas():
    from threadpoolctl import threadpool_info

    return [
        {
            k: pool.get(k)
            for k in (
                "user_api",
                "internal_api",
                "version",
                "num_threads",
                "threading_layer",
                "architecture",
                "filepath",
            )
        }
        for pool in threadpool_info()
    ]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows, else "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_info(argv=None) -> dict:
    """A JSON-ready record of the machine and software a measurement ran on."""
    import joblib

    info = {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "joblib_cpu_count": joblib.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "free_threaded_build": free_threaded_build(),
        "gil_enabled": gil_enabled(),
        "blas": _blas(),
        "versions": {
            name: _version(name)
            for name in (
                "mlpar",
                "numpy",
                "scipy",
                "scikit-learn",
                "joblib",
                "threadpoolctl",
                "dask",
                "distributed",
                "matplotlib",
            )
        },
        # Set on some machines to work around old OpenBLAS bugs; they change
        # which kernels run, so a measurement must say whether they were set.
        "env": {
            k: os.environ[k]
            for k in sorted(os.environ)
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "PYTHON_GIL"))
        },
    }
    if argv is not None:
        info["command"] = list(argv)
    return info


def format_environment(info: dict) -> str:
    """A few human lines for ``mlpar info`` and report headers."""
    blas = (
        ", ".join(
            f"{b['internal_api']} {b['version']} ({b['num_threads']} threads"
            + (f", {b['architecture']}" if b.get("architecture") else "")
            + ")"
            for b in info["blas"]
        )
        or "none found"
    )
    build = "free-threaded" if info["free_threaded_build"] else "with GIL"
    gil = "enabled" if info["gil_enabled"] else "disabled"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [
        f"cores:   {info['cores']} ({info['cores_usable']} usable)",
        f"BLAS:    {blas}",
        f"Python:  {info['python']} ({info['python_implementation']}, {build} build, "
        f"GIL {gil} at run time)",
        f"machine: {info['platform']}" + (f", CPU {info['cpu']}" if info.get("cpu") else ""),
        f"versions: {versions}",
    ]
    if info["env"]:
        lines.append("env:     " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    return "\n".join(lines)
