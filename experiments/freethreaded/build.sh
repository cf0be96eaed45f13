#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 ("3.13t", configured with --disable-gil)
# into a cache folder outside the repository, or reuse the one already there.
#
# Why build one: the same interpreter binary, NumPy and OpenBLAS with only the
# GIL switched (PYTHON_GIL=0 / PYTHON_GIL=1) is the cleanest way to separate
# GIL contention from numeric speed, and no registry this project can reach
# ships a free-threaded CPython for Debian 12.
#
# Usage:
#   bash experiments/freethreaded/build.sh          # build or reuse
#   MLPAR_FT_REBUILD=1 bash .../build.sh            # rebuild from scratch
#
# Environment:
#   MLPAR_FT_CACHE    cache folder, default $HOME/.cache/mlpar/cpython-3.13t;
#                     the interpreter goes to $MLPAR_FT_CACHE/prefix
#   MLPAR_FT_TARBALL  an upstream CPython 3.13 source tarball to build instead
#                     of fetching Debian's python3.13 orig tarball through apt
#   MLPAR_FT_JOBS     parallel make jobs, default: the number of CPUs
#   MLPAR_FT_APT      1 (default when root): apt-get installs the build
#                     dependencies and adds a trixie deb-src entry; 0: never
#                     touch apt (the dependencies must already be installed)
#   MLPAR_FT_REBUILD  1: discard a working install and build again
#
# Prints the interpreter's path as its last line of output on success.
set -euo pipefail

CACHE="${MLPAR_FT_CACHE:-$HOME/.cache/mlpar/cpython-3.13t}"
PREFIX="$CACHE/prefix"
PY="$PREFIX/bin/python3.13t"
JOBS="${MLPAR_FT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
if [ "$(id -u)" = 0 ]; then APT_DEFAULT=1; else APT_DEFAULT=0; fi
USE_APT="${MLPAR_FT_APT:-$APT_DEFAULT}"

# The modules mlpar's stack needs from the standard library, and the Debian
# package whose headers each one needs at build time. CPython's build skips a
# module silently when its headers are missing, so the check below is what
# turns a missing header into a failed build.
REQUIRED_MODULES="ssl ctypes sqlite3 lzma bz2 zlib _uuid readline"
BUILD_DEPS="build-essential pkg-config libssl-dev zlib1g-dev libbz2-dev \
libreadline-dev libsqlite3-dev libffi-dev liblzma-dev uuid-dev libncurses-dev"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Exit status 0 only for a complete free-threaded install: the binary runs, it
# was configured with --disable-gil (Py_GIL_DISABLED is 1), it can switch the
# GIL at run time (sys._is_gil_enabled exists), and every required module imports.
check_install() {
    [ -x "$PY" ] || return 1
    "$PY" - "$REQUIRED_MODULES" <<'EOF'
import importlib, sys, sysconfig
problems = []
if sysconfig.get_config_var("Py_GIL_DISABLED") != 1:
    problems.append("Py_GIL_DISABLED is not 1 (not configured with --disable-gil)")
if not hasattr(sys, "_is_gil_enabled"):
    problems.append("sys._is_gil_enabled is missing")
for name in sys.argv[1].split():
    try:
        importlib.import_module(name)
    except ImportError as exc:
        problems.append(f"module {name} does not import ({exc})")
if problems:
    print("build.sh: install check failed: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
EOF
}

# Fetch Debian's python3.13 source (suite trixie) through apt and print the
# path of its upstream (orig) tarball. `apt-get source` checks the files
# against the signed Sources index, so the tarball is verified.
fetch_source() {
    local dir="$1"
    if ! apt-cache showsrc python3.13 2>/dev/null | grep -q '^Package: python3.13$'; then
        [ "$USE_APT" = 1 ] || die "apt has no source package python3.13; add a trixie deb-src entry (see experiments/freethreaded/README.md), or set MLPAR_FT_TARBALL"
        local list=/etc/apt/sources.list.d/mlpar-trixie-src.sources
        log "adding $list (deb-src only: no binary package comes from trixie)"
        cat >"$list" <<'EOF'
# Added by mlpar experiments/freethreaded/build.sh: source packages only, to
# fetch the upstream CPython 3.13 tarball. No binary packages come from trixie.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update -qq
    fi
    log "downloading the python3.13 source package into $dir"
    # --download-only: the Debian patches are for Debian's own layout; the
    # upstream tarball configured plainly is what we want.
    (cd "$dir" && apt-get source --download-only -qq python3.13 >&2)
    local tarballs=("$dir"/python3.13_*.orig.tar.xz)
    [ -f "${tarballs[0]}" ] || die "apt-get source gave no python3.13_*.orig.tar.xz in $dir"
    printf '%s\n' "${tarballs[-1]}"
}

mkdir -p "$CACHE"
# Two CI jobs on one machine share the cache: the second waits for the first
# rather than building into the same prefix at the same time.
exec 9>"$CACHE/.build.lock"
flock 9

if [ "${MLPAR_FT_REBUILD:-0}" = 1 ]; then
    log "MLPAR_FT_REBUILD=1: building again"
elif check_install; then
    log "reusing $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
    printf '%s\n' "$PY"
    exit 0
elif [ -e "$PY" ]; then
    log "the build in $PREFIX is unusable (see above): building again"
fi

if [ "$USE_APT" = 1 ]; then
    log "installing build dependencies with apt-get"
    # shellcheck disable=SC2086  # word splitting of the package list is wanted
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $BUILD_DEPS >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $BUILD_DEPS >/dev/null; } \
        || die "apt-get could not install the build dependencies: $BUILD_DEPS"
fi

if [ -n "${MLPAR_FT_TARBALL:-}" ] && [ ! -f "$MLPAR_FT_TARBALL" ]; then
    die "MLPAR_FT_TARBALL=$MLPAR_FT_TARBALL is not a file"
fi
SRC="$CACHE/src"
rm -rf "$SRC"
mkdir -p "$SRC"
if [ -n "${MLPAR_FT_TARBALL:-}" ]; then
    TARBALL="$MLPAR_FT_TARBALL"
else
    TARBALL="$(fetch_source "$SRC")"
fi
log "unpacking $TARBALL"
tar -xf "$TARBALL" -C "$SRC"
TREE="$(find "$SRC" -mindepth 1 -maxdepth 1 -type d -name 'Python-3.13*' | head -n 1)"
[ -n "$TREE" ] && [ -x "$TREE/configure" ] || die "no Python-3.13* source tree with a configure script in $TARBALL"

log "configuring $TREE with --disable-gil --prefix=$PREFIX"
# No --enable-optimizations: PGO runs the test suite and triples the build
# time; the comparison this build exists for is GIL on vs off on one binary,
# which PGO would not change.
(cd "$TREE" && ./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install >"$SRC/configure.log" 2>&1) \
    || die "configure failed; see $SRC/configure.log"
log "compiling with make -j$JOBS (a few minutes)"
(cd "$TREE" && make -j"$JOBS" >"$SRC/make.log" 2>&1) || die "make failed; see $SRC/make.log"
# Only now, with a new build compiled, does the old install go.
rm -rf "$PREFIX"
(cd "$TREE" && make install >"$SRC/install.log" 2>&1) || die "make install failed; see $SRC/install.log"

if ! check_install; then
    die "the build finished but the install check failed; missing modules usually mean missing -dev packages ($BUILD_DEPS); see $SRC/make.log"
fi
# The source and object files are ~500 MB and no longer needed; keep the logs.
mkdir -p "$CACHE/logs"
mv "$SRC"/*.log "$CACHE/logs/"
rm -rf "$SRC"
log "built $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
printf '%s\n' "$PY"
