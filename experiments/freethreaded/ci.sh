#!/usr/bin/env bash
# CI on a free-threaded CPython: build the interpreter if the cache lacks it,
# make its environment, then run the tests that matter without the GIL
# (PYTHON_GIL=0). Exits non-zero when any step or test fails.
#
# The tests: the engine (tests/test_nn.py, tests/test_estimators.py), the
# threads backend's tests, the threads stress test (tests/test_freethreaded.py)
# and the lessons (tests/test_lessons.py). The free-threaded build is where
# threads really run Python in parallel, so these are the tests that can find
# what the GIL was hiding.
#
# Usage:
#   bash experiments/freethreaded/ci.sh [extra pytest arguments]
#   (a -k given here replaces the selection of backend tests described below)
#
# Environment:
#   MLPAR_FT_CACHE   cache folder (see build.sh), default $HOME/.cache/mlpar/cpython-3.13t
#   MLPAR_FT_OPTIONAL=1
#                    when the interpreter or its environment cannot be made
#                    (no network to Debian's or PyPI's servers, say), say so
#                    loudly and exit 0 instead of failing: .ci/run sets it, so
#                    an outage of a package server does not block the project.
#                    Test failures always fail.
#   MLPAR_FT_TESTS   test files to run instead of the default list
#   MLPAR_FT_THREADS_TESTS
#                    backend and sweep test files, of which only the tests
#                    of the in-process backends run (threads, serial, the
#                    registry): those without "processes" or "dask" in their
#                    names or parameters; default below
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

TESTS="${MLPAR_FT_TESTS-tests/test_nn.py tests/test_estimators.py tests/test_freethreaded.py tests/test_lessons.py}"
THREADS_TESTS="${MLPAR_FT_THREADS_TESTS-tests/test_backends.py tests/test_sweep.py}"

unavailable() {
    echo "ci.sh: $1" >&2
    if [ "${MLPAR_FT_OPTIONAL:-0}" = 1 ]; then
        echo "ci.sh: WARNING: the free-threaded tests did NOT run (MLPAR_FT_OPTIONAL=1)" >&2
        exit 0
    fi
    exit 1
}

echo "== free-threaded CPython: interpreter" >&2
bash "$HERE/build.sh" >/dev/null || unavailable "could not build the free-threaded interpreter (see build.sh's log)"
echo "== free-threaded CPython: environment" >&2
PY="$(bash "$HERE/env.sh" | tail -n 1)" || unavailable "could not make its virtual environment"
[ -x "$PY" ] || unavailable "env.sh did not print an interpreter path"

cd "$REPO"
export PYTHON_GIL=0
"$PY" - <<'EOF'
import sys, sysconfig
free = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
gil = sys._is_gil_enabled()
build = "free-threaded" if free else "default"
state = "enabled" if gil else "disabled"
print(f"== {sys.executable}: Python {sys.version.split()[0]}, {build} build, GIL {state}",
      file=sys.stderr)
if not free or gil:
    sys.exit("ci.sh: the GIL is not disabled; nothing here would test free threading")
EOF

# Every listed file must exist: a test file renamed away must not turn this
# run into a silent pass.
# shellcheck disable=SC2086  # word splitting of the file lists is wanted
for file in $TESTS $THREADS_TESTS; do
    [ -f "$file" ] || { echo "ci.sh: error: test file $file not found (set MLPAR_FT_TESTS / MLPAR_FT_THREADS_TESTS to the current names)" >&2; exit 1; }
done

# One pytest run, so that one summary line closes it. -k keeps every test of
# $TESTS and, of $THREADS_TESTS, those of the in-process backends: worker
# processes and Dask do not share the sweep's threads, so running them here
# would test nothing the GIL changes (and the environment has no Dask).
selector=""
for file in $THREADS_TESTS; do
    module="$(basename "$file" .py)"
    selector="${selector:+$selector and }not $module"
done
echo "== pytest with PYTHON_GIL=0" >&2
# shellcheck disable=SC2086
exec "$PY" -m pytest -p no:cacheprovider $TESTS $THREADS_TESTS \
    ${selector:+-k "($selector) or not (processes or dask)"} "$@"
