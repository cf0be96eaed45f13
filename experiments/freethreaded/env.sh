#!/usr/bin/env bash
# Make (or refresh) the virtual environment of the free-threaded interpreter:
# mlpar installed editable from this repository, plus what its tests need, at
# the versions of constraints.txt (releases with cp313t wheels).
#
# The environment lives in the cache folder beside the interpreter, never in
# the repository. It is reused while the interpreter, constraints.txt,
# pyproject.toml and the repository path are unchanged.
#
# Usage:
#   bash experiments/freethreaded/build.sh   # first: the interpreter
#   bash experiments/freethreaded/env.sh     # then: the environment
#
# Environment:
#   MLPAR_FT_CACHE   cache folder, default $HOME/.cache/mlpar/cpython-3.13t;
#                    the environment goes to $MLPAR_FT_CACHE/venv
#
# Prints the environment's python as its last line of output on success.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${MLPAR_FT_CACHE:-$HOME/.cache/mlpar/cpython-3.13t}"
BASE_PY="$CACHE/prefix/bin/python3.13t"
VENV="$CACHE/venv"
VPY="$VENV/bin/python"
CONSTRAINTS="$HERE/constraints.txt"
STAMP="$VENV/.mlpar-env-stamp"
# What the tests import beyond mlpar's own dependencies.
TEST_DEPS="pytest pytest-timeout hypothesis matplotlib"

log() { printf 'env.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$BASE_PY" ] || die "no free-threaded interpreter at $BASE_PY; run experiments/freethreaded/build.sh first"

mkdir -p "$CACHE"
exec 9>"$CACHE/.env.lock"
flock 9

# Everything the environment's contents depend on; a change means reinstall.
stamp() {
    {
        "$BASE_PY" -c 'import sys; print(sys.version)'
        printf 'repo=%s\ntest_deps=%s\n' "$REPO" "$TEST_DEPS"
        cat "$CONSTRAINTS" "$REPO/pyproject.toml"
    } | sha256sum | cut -d' ' -f1
}
WANT="$(stamp)"

# A venv whose python no longer runs (the interpreter was rebuilt elsewhere,
# or removed) cannot be repaired by pip: start it again.
if [ -d "$VENV" ] && ! "$VPY" -c 'import sys' 2>/dev/null; then
    log "discarding $VENV: its python does not run"
    rm -rf "$VENV"
fi
if [ ! -d "$VENV" ]; then
    log "creating $VENV"
    "$BASE_PY" -m venv "$VENV"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    log "reusing $VENV"
else
    log "installing mlpar (editable, from $REPO) and $TEST_DEPS with $CONSTRAINTS"
    # --only-binary: if a pinned version had no cp313t wheel, pip would try
    # to compile it (NumPy, SciPy: for an hour, likely failing; Hypothesis:
    # needing Rust and crates.io); failing at once, naming it, is better.
    # PyYAML is the exception: no release has a cp313t wheel, and its sdist
    # builds in seconds (with libyaml's C extension if libyaml-dev is there;
    # mlpar uses only the pure-Python safe_load either way).
    # shellcheck disable=SC2086  # word splitting of TEST_DEPS is wanted
    "$VPY" -m pip install --quiet --disable-pip-version-check \
        --constraint "$CONSTRAINTS" \
        --only-binary :all: --no-binary PyYAML \
        --editable "$REPO" $TEST_DEPS \
        || die "pip could not install the environment; see the pip output above"
    rm -f "$STAMP"
fi

# Check the result rather than trust the stamp alone: mlpar must come from
# this repository, and the interpreter must be the free-threaded one. Run
# from / so that a checkout in the current folder cannot stand in for the
# installed package.
(cd / && "$VPY" - "$REPO") <<'EOF' || die "the environment in $VENV is not usable (see above); delete it and run env.sh again"
import os, sys, sysconfig
import mlpar, numpy, scipy, sklearn
repo = os.path.realpath(sys.argv[1])
where = os.path.realpath(os.path.dirname(mlpar.__file__))
if where != os.path.join(repo, "mlpar"):
    sys.exit(f"env.sh: mlpar is imported from {where}, not from {repo}")
if sysconfig.get_config_var("Py_GIL_DISABLED") != 1:
    sys.exit("env.sh: the environment's python is not a free-threaded build")
print(f"env.sh: python {sys.version.split()[0]} (free-threaded), numpy {numpy.__version__}, "
      f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}", file=sys.stderr)
EOF
printf '%s\n' "$WANT" >"$STAMP"
printf '%s\n' "$VPY"
