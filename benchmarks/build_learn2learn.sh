#!/usr/bin/env bash
# Builds learn2learn 0.2.0 (the baseline of benchmarks/meta_training.py) and installs it into
# the project venv without touching its torch.
#
#     bash benchmarks/build_learn2learn.sh            # or: make learn2learn
#
# Why a build: learn2learn 0.2.0 ships only an sdist whose generated C files do not compile on
# Python 3.11, and whose requirements pull a CUDA torch, torchvision and gym. So, in a throwaway
# venv under build/learn2learn/ (gitignored): Cython < 3 regenerates the C files, gym and
# vision become optional imports, gym/torchvision/gsutil/qpth leave install_requires, and the
# wheel is installed with --no-deps. Safe to re-run: does nothing when learn2learn imports.
# VENV (default .venv) is the project venv; BUILD_DIR (default build/learn2learn) the work dir.
set -euo pipefail

VERSION=0.2.0
SHA256=69f1d7cb0d0a6be7a2c6ad8e83e2ebbe70fb05e51d61e45e63078b40c75ea419
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
BUILD_DIR="${BUILD_DIR:-build/learn2learn}"
PY="$VENV/bin/python"

fail() {
    echo "build_learn2learn: error: $*" >&2
    exit 1
}
trap 'fail "command failed (line $LINENO): $BASH_COMMAND; see the output above"' ERR

[ -x "$PY" ] || fail "no project venv at $VENV (run 'make install' first, or set VENV=...)"

if "$PY" -c "import learn2learn" 2>/dev/null; then
    echo "build_learn2learn: learn2learn $("$PY" -c 'import learn2learn; print(learn2learn.__version__)') is already installed in $VENV; nothing to do"
    exit 0
fi

mkdir -p "$BUILD_DIR"
BUILD_VENV="$BUILD_DIR/venv"
SDIST="$BUILD_DIR/learn2learn-$VERSION.tar.gz"
SRC="$BUILD_DIR/learn2learn-$VERSION"
WHEELS="$BUILD_DIR/wheels"

# The throwaway build venv, from the project venv's interpreter (so the wheel's ABI matches).
if [ ! -x "$BUILD_VENV/bin/cython" ]; then
    echo "build_learn2learn: creating the build venv $BUILD_VENV"
    rm -rf "$BUILD_VENV"
    "$PY" -m venv "$BUILD_VENV"
    "$BUILD_VENV/bin/python" -m pip install --quiet "cython<3" setuptools wheel
fi

if [ ! -f "$SDIST" ] || ! echo "$SHA256  $SDIST" | sha256sum --check --status; then
    echo "build_learn2learn: downloading the learn2learn $VERSION sdist"
    rm -f "$SDIST"
    "$BUILD_VENV/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
        -d "$BUILD_DIR" "learn2learn==$VERSION"
fi
echo "$SHA256  $SDIST" | sha256sum --check --status \
    || fail "$SDIST does not have the expected sha256 $SHA256"

# A fresh copy of the sources every run, so the patches below apply to pristine files.
rm -rf "$SRC" "$WHEELS"
tar -xzf "$SDIST" -C "$BUILD_DIR"
rm -rf "$SRC/.eggs"  # Cython eggs for Python 3.7/3.9 that the sdist carries

echo "build_learn2learn: regenerating the C files with $("$BUILD_VENV/bin/cython" --version 2>&1)"
(cd "$SRC" && "$ROOT/$BUILD_VENV/bin/cython" -3 learn2learn/data/meta_dataset.pyx \
    learn2learn/data/task_dataset.pyx learn2learn/data/transforms.pyx)

"$BUILD_VENV/bin/python" - "$SRC" <<'PATCH'
import sys
from pathlib import Path

src = Path(sys.argv[1])


def patch(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        sys.exit(f"build_learn2learn: error: {path} does not contain {old!r}; unknown sources?")
    path.write_text(text.replace(old, new))


init = src / "learn2learn" / "__init__.py"
for module in ("gym", "vision"):  # need gym / torchvision, which the benchmarks do not use
    patch(init, f"from . import {module}\n",
          f"try:\n    from . import {module}\nexcept ImportError:\n    pass\n")
setup = src / "setup.py"
for requirement in ("'gym>=0.14.0'", "'torchvision>=0.3.0'", "'gsutil'", "'qpth>=0.0.15'"):
    patch(setup, f"        {requirement},\n", "")
PATCH

echo "build_learn2learn: building the wheel"
"$BUILD_VENV/bin/python" -m pip wheel --quiet --no-build-isolation --no-deps -w "$WHEELS" "$SRC"
WHEEL="$(ls "$WHEELS"/learn2learn-"$VERSION"-*.whl)"

echo "build_learn2learn: installing $(basename "$WHEEL") into $VENV (--no-deps)"
"$PY" -m pip install --quiet --no-deps --force-reinstall "$WHEEL"

"$PY" -c "import learn2learn as l2l; l2l.algorithms.MAML" \
    || fail "learn2learn was installed but does not import; see the traceback above"
if "$PY" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    fail "nvidia-* packages are in $VENV; they must not be"
fi
echo "build_learn2learn: learn2learn $VERSION installed in $VENV"
