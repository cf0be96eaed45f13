"""What the numbers were measured on: cores, BLAS, Python build, versions."""

from __future__ import annotations

import functools
import math
import os
import platform
import sys
import sysconfig

__all__ = [
    "environment_info",
    "gil_enabled",
    "free_threaded_build",
    "format_environment",
    "cpu_count",
    "installed_version",
]


def free_threaded_build() -> bool:
    """True on a free-threaded CPython build (3.13t and later)."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Whether the GIL is enabled right now (always True before CPython 3.13)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def cpu_count() -> int:
    """The CPUs this process may use, by joblib's rule, without importing joblib.

    The smallest of ``os.cpu_count()``, the CPU affinity, a cgroup's CPU
    quota (rounded up) and ``LOKY_MAX_CPU_COUNT``, and at least 1: what
    ``joblib.cpu_count()`` returns (loky's ``cpu_count``), which costs ~0.1 s
    of imports that a serial run or the fork server's parent need not pay.
    """
    total = os.cpu_count() or 1
    limits = [total, _cgroup_cpus(total), int(os.environ.get("LOKY_MAX_CPU_COUNT", total))]
    if hasattr(os, "sched_getaffinity"):
        limits.append(len(os.sched_getaffinity(0)))
    return max(1, min(limits))


def _cgroup_cpus(total):
    """A cgroup's CPU bandwidth limit (v2 ``cpu.max``, else v1), or ``total`` if none."""
    quota = period = None
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            parts = f.read().split()
        if len(parts) == 2:
            quota, period = parts
    except OSError:
        pass
    if quota is None:
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                quota = f.read().strip()
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                period = f.read().strip()
        except OSError:
            return total
    if quota == "max" or int(quota) <= 0 or int(period) <= 0:
        return total
    return math.ceil(int(quota) / int(period))


def installed_version(name):
    """The installed version of distribution ``name`` (None if absent), importing nothing."""
    return _installed_versions().get(_normalized(name))


@functools.cache
def _installed_versions():
    """Distribution name (normalized) -> version, first found along ``sys.path``.

    Read from the ``<name>-<version>.dist-info`` (or ``.egg-info``) folder
    names, as ``importlib.metadata`` finds them, without its ~30 ms import.
    """
    found = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, dot, ext = name.rpartition(".")
            if dot and ext in ("dist-info", "egg-info"):
                dist, _, version = stem.partition("-")
                version = version.split("-")[0]  # egg-info: <name>-<version>-py3.11
                # A source checkout's <name>.egg-info names no version: its PKG-INFO does.
                version = version or _metadata_version(os.path.join(entry or ".", name))
                if version:
                    found.setdefault(_normalized(dist), version)
    return found


def _metadata_version(path):
    """The ``Version:`` line of a metadata folder's METADATA or PKG-INFO (or such a file)."""
    for file in (os.path.join(path, "METADATA"), os.path.join(path, "PKG-INFO"), path):
        try:
            with open(file, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break  # the headers end at the first blank line
        except OSError:
            continue
    return None


def _normalized(name):
    return name.lower().replace("-", "_").replace(".", "_")


def _blas():
    # NumPy first: threadpoolctl sees only the BLAS libraries already loaded.
    import numpy  # noqa: F401
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


def _platform():
    """``platform.platform()``, without the ``uname -p`` process it starts on Linux.

    That process (~10 ms, on the path of every ``mlpar run``) only adds the
    processor when it differs from the machine; ``cpu`` names it better.
    """
    u = platform.uname()  # its processor is resolved only when read
    if u.system != "Linux":
        return platform.platform()
    lib, version = platform.libc_ver()
    return "-".join(x for x in (u.system, u.release, u.machine, "with", lib + version) if x)


def environment_info(argv=None) -> dict:
    """A JSON-ready record of the machine and software a measurement ran on."""
    info = {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "joblib_cpu_count": cpu_count(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "platform": _platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "free_threaded_build": free_threaded_build(),
        "gil_enabled": gil_enabled(),
        "blas": _blas(),
        "versions": {
            name: installed_version(name)
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
