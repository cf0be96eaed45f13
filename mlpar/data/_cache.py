"""The shared cache of prepared data: split, scaled ``.npy`` files, memory-mapped.

:func:`prepare_splits` (the sweep's parent) writes split, scaled data once to an
on-disk cache; :func:`load_splits` (every worker) memory-maps it read-only, so a
worker neither imports scikit-learn nor holds its own copy of the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..environment import installed_version
from ._datasets import DATASETS, Splits, _check_dataset, _check_fractions, load_dataset, make_splits

__all__ = ["cache_dir", "load_splits", "prepare_splits"]


# --- The shared cache ---------------------------------------------------------
#
# <cache_dir()>/<name>-<sha256 of the request>/ holds one .npy file per array
# and meta.json (the request, the task, each file's size, shape, dtype and
# sha256). An entry is built in a temporary folder inside the cache root and
# renamed into place, so readers see either no entry or a whole one.

_FORMAT = 1  # bump when the layout or what the files hold changes
_PARTS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
_META = "meta.json"
_MEMO_SIZE = 8
# (cache root, entry name) -> Splits, per process, the most recent last: every
# trial of a threads sweep asks for the same data, and the threads can share
# one set of memory maps.
_memo: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _new_lock():
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    # A child forked while another thread held the lock would wait forever.
    os.register_at_fork(after_in_child=_new_lock)


def cache_dir() -> Path:
    """The folder of the data cache: ``$MLPAR_CACHE``, else ``~/mlpar_data``.

    This mirrors scikit-learn's ``data_home`` (``$SCIKIT_LEARN_DATA``, else
    ``~/scikit_learn_data``). The folder is not created here: a cache that is
    only read (prepared by someone else) need not be writable.

    Returns
    -------
    pathlib.Path
    """
    env = os.environ.get("MLPAR_CACHE")
    return Path(env).expanduser() if env else Path("~", "mlpar_data").expanduser()


def load_splits(
    name,
    *,
    n_samples=None,
    n_features=None,
    n_classes=None,
    noise=None,
    val_fraction=0.2,
    test_fraction=0.2,
    random_state=0,
    dtype="float32",
) -> Splits:
    """Split, scaled data from the cache, memory-mapped read-only.

    Returns the same arrays, bit for bit, as ``make_splits(load_dataset(name,
    ..., random_state=random_state), val_fraction=val_fraction,
    test_fraction=test_fraction, random_state=random_state, dtype=dtype)``.
    On a hit nothing of scikit-learn or SciPy is imported; on a miss the entry
    is built and written first. The check of an entry is cheap (meta.json
    parses, file sizes, shapes and dtypes match, ``np.load`` succeeds); a
    damaged entry is rebuilt with a one-line warning. Repeated calls in one
    process return the same arrays.

    Parameters
    ----------
    name : str
        One of ``DATASETS``.
    n_samples, n_features, n_classes, noise : int, int, int, float, default=None
        As in :func:`load_dataset`.
    val_fraction, test_fraction : float, default=0.2
        As in :func:`make_splits`.
    random_state : int, default=0
        Seed of the generator and of the split.
    dtype : {"float32", "float64"}, default="float32"
        dtype of the features (and of regression targets).

    Returns
    -------
    Splits
        Its arrays are read-only memory maps: writing to them raises.

    Raises
    ------
    ValueError
        For an unknown name, a size parameter the dataset does not accept or
        bad fractions (the messages of :func:`load_dataset` and
        :func:`make_splits`), before the cache is touched.
    TypeError
        For a ``random_state`` that is not an integer.
    OSError
        When neither the cache folder nor the temporary fallback is writable.

    Warns
    -----
    RuntimeWarning
        One line when a damaged entry is rebuilt, or when the cache folder is
        not writable and a per-user folder under the temporary folder is used.
    """
    return _cached_splits(
        name,
        {"n_samples": n_samples, "n_features": n_features, "n_classes": n_classes, "noise": noise},
        val_fraction,
        test_fraction,
        random_state,
        dtype,
        verify=False,
    )


def prepare_splits(
    name,
    *,
    n_samples=None,
    n_features=None,
    n_classes=None,
    noise=None,
    val_fraction=0.2,
    test_fraction=0.2,
    random_state=0,
    dtype="float32",
) -> Splits:
    """Build the cache entry if it is missing and verify every file's sha256.

    Call it once in the parent of a sweep, before any worker starts: workers
    then find the entry and check it only cheaply (:func:`load_splits`). A
    corrupt or truncated entry is removed, rebuilt and reported in one line;
    it is never used silently.

    Parameters
    ----------
    name, n_samples, n_features, n_classes, noise, val_fraction, test_fraction, \
random_state, dtype
        As in :func:`load_splits`.

    Returns
    -------
    Splits
        Read-only memory maps of the verified files.

    Raises
    ------
    ValueError, TypeError, OSError
        As in :func:`load_splits`.

    Warns
    -----
    RuntimeWarning
        As in :func:`load_splits`.
    """
    return _cached_splits(
        name,
        {"n_samples": n_samples, "n_features": n_features, "n_classes": n_classes, "noise": noise},
        val_fraction,
        test_fraction,
        random_state,
        dtype,
        verify=True,
    )


def _cached_splits(name, params, val_fraction, test_fraction, random_state, dtype, *, verify):
    _check_dataset(name, **params)
    _check_fractions(val_fraction, test_fraction)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(
            f"random_state must be an integer for cached splits, got {random_state!r} "
            f"({type(random_state).__name__})"
        )
    request = {
        "format": _FORMAT,
        "dataset": name,
        "params": params,
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "random_state": int(random_state),
        "dtype": np.dtype(dtype).str,
        # Generators and splitters may change between releases, and so may
        # NumPy's reductions (the scaler's mean and std).
        "scikit-learn": _sklearn_version(),
        "numpy": np.__version__,
    }
    text = _canonical(request)
    key = f"{name}-{hashlib.sha256(text).hexdigest()}"
    request = json.loads(text)  # plain Python values, as meta.json will hold them
    root = cache_dir()
    notes = []
    with _lock:
        memo_key = (str(root), key)
        splits = None if verify else _memo.get(memo_key)
        if splits is None:
            splits = _from_cache(root, key, request, verify=verify, notes=notes)
        _memo[memo_key] = splits
        _memo.move_to_end(memo_key)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    return splits


def _sklearn_version():
    # The installed distribution's version: imports neither scikit-learn nor
    # importlib.metadata.
    return installed_version("scikit-learn")


def _canonical(obj) -> bytes:
    def plain(o):
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"dataset parameters must be numbers or None to be cached, got {o!r}")

    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=plain
    ).encode()


def _one_line(text) -> str:
    return " ".join(str(text).split())


class _Unwritable(Exception):
    """The cache root cannot hold a new entry (the reason is ``__cause__``)."""


def _from_cache(root, key, request, *, verify, notes):
    try:
        return _from_root(root, key, request, verify=verify, notes=notes)
    except _Unwritable as exc:
        reason = _one_line(exc.__cause__)
    fallback = Path(tempfile.gettempdir()) / f"mlpar_data-{_user()}"
    env = os.environ.get("MLPAR_CACHE")
    where = f"MLPAR_CACHE={env}" if env else f"the data cache {root} (MLPAR_CACHE is not set)"
    try:
        _own_folder(fallback)
        splits = _from_root(fallback, key, request, verify=verify, notes=notes)
    except (_Unwritable, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc, _Unwritable) else exc
        raise OSError(
            f"{where} is not writable ({reason}), nor is {fallback} ({_one_line(cause)}); "
            f"set MLPAR_CACHE to a writable folder"
        ) from None
    notes.insert(0, f"{where} is not writable ({reason}); using {fallback} instead")
    return splits


def _user():
    try:
        return str(os.getuid())
    except AttributeError:  # Windows
        import getpass

        return getpass.getuser()


def _own_folder(folder):
    # A predictable name under a shared temporary folder: refuse one that
    # another user created (or a link to elsewhere), whose files we would load.
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if folder.is_symlink() or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise PermissionError(f"{folder} is a link or belongs to another user")


def _from_root(root, key, request, *, verify, notes):
    entry = root / key
    for attempt in range(3):
        # Only the first look is a full check: an entry built just now (by
        # us or by a process that won the race) was hashed as it was written.
        splits, problem = _open_entry(entry, key, request, verify=verify and attempt == 0)
        if splits is not None:
            return splits
        if problem is not None:
            notes.append(f"data cache entry {entry} was damaged ({problem}); rebuilt it")
            _discard(entry)
        _build(root, entry, key, request)
    raise OSError(f"data cache entry {entry} could not be built and read back")


def _open_entry(entry, key, request, *, verify):
    """(Splits, None) for a good entry, (None, problem) for a bad one, (None, None) if absent."""
    if not os.path.lexists(entry):
        return None, None
    try:
        meta = json.loads((entry / _META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{_META} is missing"
    except (OSError, ValueError) as exc:
        return None, f"{_META} is unreadable: {_one_line(exc)}"
    try:
        files = {part: meta["files"][f"{part}.npy"] for part in _PARTS}
        sizes = {part: int(f["bytes"]) for part, f in files.items()}
        ok = (
            meta["key"] == key
            and meta["request"] == request
            and meta["task"] == (DATASETS[request["dataset"]][0])
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        return None, f"{_META} does not describe this entry"
    arrays = {}
    for part in _PARTS:
        path = entry / f"{part}.npy"
        try:
            size = path.stat().st_size
        except OSError:
            return None, f"{path.name} is missing"
        if size != sizes[part]:
            return None, f"{path.name} has {size} bytes, {_META} records {sizes[part]}"
        if verify and _sha256(path) != files[part].get("sha256"):
            return None, f"{path.name} does not match its sha256 in {_META}"
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            return None, f"{path.name} does not load: {_one_line(exc)}"
        if list(a.shape) != files[part].get("shape") or a.dtype.str != files[part].get("dtype"):
            return None, (
                f"{path.name} holds {a.dtype.str} {list(a.shape)}, {_META} records "
                f"{files[part].get('dtype')} {files[part].get('shape')}"
            )
        arrays[part] = a
    return Splits(**arrays, task=meta["task"]), None


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _discard(entry):
    # Rename first, then delete: a reader sees the entry whole or not at all,
    # never half deleted.
    trash = entry.with_name(f".trash-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.rename(entry, trash)
    except FileNotFoundError:
        return  # another process removed it first
    except OSError as exc:
        raise _Unwritable() from exc
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)


def _build(root, entry, key, request):
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:40]}-", dir=root))
    except OSError as exc:
        raise _Unwritable() from exc
    try:
        rs = request["random_state"]
        splits = make_splits(
            load_dataset(request["dataset"], **request["params"], random_state=rs),
            val_fraction=request["val_fraction"],
            test_fraction=request["test_fraction"],
            random_state=rs,
            dtype=request["dtype"],
        )
        _fill(tmp, splits, key, request)
        try:
            os.rename(tmp, entry)
        except OSError:
            if not os.path.lexists(entry):
                raise
            # Another process got there first: keep theirs (same request, same
            # bytes) and drop ours.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fill(folder, splits, key, request):
    """Write the six arrays and meta.json into ``folder``, each fsynced."""
    files = {}
    for part in _PARTS:
        a = getattr(splits, part)
        path = folder / f"{part}.npy"
        with open(path, "wb") as f:
            np.save(f, a, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        files[path.name] = {
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
            "shape": list(a.shape),
            "dtype": a.dtype.str,
        }
    meta = {"key": key, "request": request, "task": splits.task, "files": files}
    with open(folder / _META, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
