#!/usr/bin/env bash
# The aarch64 lane: edgelm's kernels, operators and runtime tests on an emulated Arm CPU.
#
# On this x86-64 Debian 12 machine: Debian's qemu-user and aarch64 cross compiler, Debian
# bookworm's arm64 python3.11 unpacked into a sysroot (no chroot, no binfmt_misc), PyPI's
# aarch64 wheels for that interpreter, edgelm's Cython kernels and operator library cross-
# compiled, then pytest under `qemu-aarch64 -cpu CPU` for each instruction-set level, and
# one real SmolLM2 int4 greedy chat answer. Emulated time says nothing about Arm speed;
# correctness, yes.
#
#   bash scripts/arm.sh                 # set up (cached) and run the lane
#   bash scripts/arm.sh --setup-only    # only the sysroot, wheels and the cross build
#   bash scripts/arm.sh -- ARGS         # pytest ARGS under qemu instead of the lane's tests
#
# Cache: $EDGELM_ARM_CACHE (default ~/.cache/edgelm-arm): sysroot, wheels (~1.3 GB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${EDGELM_ARM_CACHE:-$HOME/.cache/edgelm-arm}"
SYSROOT="$CACHE/sysroot"
SITE="$CACHE/site"            # the guest's third-party packages (aarch64 wheels)
STAGE="$CACHE/stage"          # edgelm as the guest imports it: sources + aarch64 builds
PYWRAP="$CACHE/python-arm"    # an x86 wrapper that runs the guest python under qemu
SETUP_ONLY=0
PYTEST_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --setup-only) SETUP_ONLY=1 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        *) echo "arm.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
say() { echo "[arm] $*" >&2; }
mkdir -p "$CACHE"

# -- 1. host tools --------------------------------------------------------------------
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    say "installing qemu-user and gcc-aarch64-linux-gnu from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user gcc-aarch64-linux-gnu >/dev/null
fi

# -- 2. the arm64 sysroot: Debian bookworm's python3.11 and the libraries it links -----
SYSROOT_PKGS="libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libsqlite3-0 libbz2-1.0 liblzma5
libcrypt1 libncursesw6 libtinfo6 libreadline8 libuuid1 libdb5.3 libgdbm6 libnsl2 libtirpc3 libgssapi-krb5-2
libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libpython3.11-minimal
libpython3.11-stdlib libpython3.11-dev libpython3.11 python3.11-minimal python3.11 libzstd1"
SYSROOT_ALL_PKGS="media-types"  # Architecture: all
stamp="$SYSROOT/.edgelm-sysroot"
if [ ! -f "$stamp" ]; then
    say "building the arm64 sysroot in $SYSROOT"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    apt-get update -qq
    debs="$CACHE/debs"
    rm -rf "$debs" "$SYSROOT"
    mkdir -p "$debs" "$SYSROOT"
    (cd "$debs" && apt-get download -qq $(for p in $SYSROOT_PKGS; do echo "$p:arm64"; done) $SYSROOT_ALL_PKGS)
    for d in "$debs"/*.deb; do dpkg -x "$d" "$SYSROOT"; done
    # qemu-user shows the guest the host's /proc/cpuinfo (x86 format), on which onnxruntime's
    # cpuinfo crashes at import; -L SYSROOT makes the guest read this file instead. It lists
    # -cpu max's features whatever -cpu says: edgelm's own probe reads getauxval, which qemu
    # fills per emulated core (the lane checks cortex-a72 and a76 get neon and dotprod), but
    # stock ONNX Runtime kernels should only be run at -cpu max.
    mkdir -p "$SYSROOT/proc"
    {
        for i in 0 1; do
            printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp i8mm bf16\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i"
        done
    } > "$SYSROOT/proc/cpuinfo"
    touch "$stamp"
fi

# The guest python under qemu. A wrapper, so that sys.executable (which tests use to start
# child Pythons) is itself run under qemu: qemu's -0 sets the guest's argv[0]. EDGELM_QEMU_ARGS
# adds qemu flags (benchmarks/arm_instructions.py loads an instruction-counting plugin).
QEMU_CPU="${EDGELM_ARM_CPU:-max}"
cat > "$PYWRAP" <<EOF
#!/bin/sh
exec qemu-aarch64 \${EDGELM_QEMU_ARGS:-} -cpu "\${EDGELM_ARM_CPU:-$QEMU_CPU}" -L "$SYSROOT" -0 "$PYWRAP" "$SYSROOT/usr/bin/python3.11" "\$@"
EOF
chmod +x "$PYWRAP"
# Empty guest site-packages folders: the guest's sys.path must never reach the host's x86 ones.
mkdir -p "$SYSROOT/usr/local/lib/python3.11/dist-packages" "$SYSROOT/usr/lib/python3/dist-packages"
export PYTHONNOUSERSITE=1
"$PYWRAP" -c "import platform, sys; assert platform.machine() == 'aarch64', platform.machine()" \
    || { say "the arm64 python does not start under qemu"; exit 1; }
say "guest python: $("$PYWRAP" -c 'import platform, sys; print(sys.version.split()[0], platform.machine())')"

# -- 3. PyPI's aarch64 wheels for the guest (the device side: no torch) ---------------
GUEST_REQS="numpy onnxruntime tokenizers tqdm jinja2 onnx pytest hypothesis llguidance"
wheel_stamp="$SITE/.edgelm-wheels"
if [ ! -f "$wheel_stamp" ] || [ "$(cat "$wheel_stamp")" != "$GUEST_REQS" ]; then
    say "installing aarch64 wheels into $SITE: $GUEST_REQS"
    rm -rf "$SITE"
    # pip evaluates markers for the host; every one of these has cp311 aarch64 wheels
    # (manylinux2014 alone stops at numpy 2.2, hence the newer tags).
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$SITE" \
        --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64 \
        --platform manylinux_2_28_aarch64 $GUEST_REQS 2>&1 | { grep -v "^WARNING: Location" >&2 || true; }
    echo "$GUEST_REQS" > "$wheel_stamp"
fi
export PYTHONPATH="$STAGE:$SITE"
"$PYWRAP" -c "import numpy, onnxruntime, tokenizers; print('[arm] guest wheels: numpy', numpy.__version__, '| onnxruntime', onnxruntime.__version__)" >&2

# -- 4. edgelm for the guest: its Python sources and its two compiled parts, cross-built --
say "cross-compiling edgelm's kernels for aarch64"
# A mirror of the checkout without its x86 builds: the guest runs from it (its own rootdir
# for pytest), so nothing on its sys.path can be an x86 extension.
rm -rf "$STAGE"
mkdir -p "$STAGE"
(cd "$ROOT" && tar --exclude=.git --exclude=.venv --exclude=models --exclude=reports --exclude=build \
    --exclude='*.so' --exclude='__pycache__' --exclude='.pytest_cache' --exclude='.mypy_cache' \
    --exclude='.ruff_cache' --exclude='.hypothesis' --exclude='*.egg-info' -cf - .) | (cd "$STAGE" && tar -xf -)
# setup.py itself builds both parts, as `pip install .` does on an aarch64 board, with the
# guest interpreter's build configuration: its _sysconfigdata names aarch64-linux-gnu-gcc
# and the aarch64 extension suffix, and the sysroot supplies its Python headers. The host's
# Cython and numpy headers write portable C (numpy 2's headers target its oldest supported
# API, so the guest's numpy loads the result).
XC="$CACHE/cross"
rm -rf "$XC" && mkdir -p "$XC"
cp "$SYSROOT/usr/lib/python3.11/_sysconfigdata__aarch64-linux-gnu.py" "$XC/"
(cd "$STAGE" && env -u PYTHONPATH _PYTHON_HOST_PLATFORM=linux-aarch64 \
    _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__aarch64-linux-gnu PYTHONPATH="$XC" \
    CFLAGS="-I$SYSROOT/usr/include/python3.11 -I$SYSROOT/usr/include" \
    "$ROOT/.venv/bin/python" setup.py -q build_ext --inplace >"$XC/build.log" 2>&1) \
    || { tail -20 "$XC/build.log" >&2; say "setup.py could not cross-build edgelm for aarch64"; exit 1; }
rm -rf "$STAGE/build"
EXT=".cpython-311-aarch64-linux-gnu.so"
for so in "$STAGE/edgelm/_ortops$EXT" "$STAGE/edgelm/_kernels/_sampling$EXT"; do
    file "$so" | grep -q "ARM aarch64" || { say "$so is not an aarch64 build"; exit 1; }
done
cd "$STAGE"
"$PYWRAP" -c "from edgelm.runtime import ortops; from edgelm.sampling import Sampler; import numpy as np; \
print('[arm] edgelm imports; operators at', ortops.library_path(), 'running', ortops.active_isa()); from edgelm.sampling import GREEDY; print('[arm] greedy draw', Sampler(10, GREEDY).sample(np.arange(10, dtype=np.float32)))" >&2
[ "$SETUP_ONLY" = 1 ] && exit 0

# -- 5. the lane --------------------------------------------------------------------------
cd "$STAGE"
if [ ${#PYTEST_ARGS[@]} -gt 0 ]; then
    exec "$PYWRAP" -m pytest -p no:cacheprovider "${PYTEST_ARGS[@]}"
fi
t0=$SECONDS
# Which level each emulated core gets (getauxval), and that the cap takes effect.
for spec in "cortex-a72:neon" "cortex-a76:dotprod" "max:i8mm"; do
    cpu="${spec%%:*}" want="${spec##*:}"
    got="$(EDGELM_ARM_CPU="$cpu" "$PYWRAP" -c 'from edgelm.runtime import ortops; print(ortops.active_isa())')"
    [ "$got" = "$want" ] || { say "qemu -cpu $cpu: the operators chose $got, expected $want"; exit 1; }
    capped="$(EDGELM_ARM_CPU="$cpu" EDGELM_ORTOPS_ISA=portable "$PYWRAP" -c 'from edgelm.runtime import ortops; print(ortops.active_isa())')"
    [ "$capped" = portable ] || { say "EDGELM_ORTOPS_ISA=portable ignored on $cpu"; exit 1; }
    say "qemu -cpu $cpu: $got"
done
# The kernels at every level (the operator tests run each in a child with EDGELM_ORTOPS_ISA,
# and hold NEON and dotprod to the portable path bit for bit), the sampling kernels' fuzz,
# the shared exp (its bound, and NEON lanes = scalar bits), llama.cpp's sampler cases (fewer property
# examples than natively), the chat sandbox and the store;
# torch-based tests stay on x86 (no torch on a device).
say "pytest under qemu-aarch64 -cpu $QEMU_CPU"
EDGELM_FUZZ_VECTORS=3000 EDGELM_EXP_STRIDE=997 EDGELM_CHAIN_EXAMPLES=60 "$PYWRAP" -m pytest -q -p no:cacheprovider \
    tests/runtime/test_ortops.py tests/runtime/test_ortops_hostile.py tests/runtime/test_attention_op.py \
    tests/runtime/test_chat_sandbox.py tests/test_sampling_fuzz.py tests/bench/test_store.py tests/test_exp.py \
    tests/test_token_mask.py tests/test_sampling_chain.py
# One real generation: SmolLM2-135M int4 (exported on this x86 host: export needs torch)
# answering through the chat template, greedy, on the emulated Arm CPU.
MODEL="$CACHE/smollm2-135m-int4"
HOSTPY=(env -u PYTHONPATH "$ROOT/.venv/bin/python")  # the guest's PYTHONPATH is aarch64-only
if ! "${HOSTPY[@]}" -c "import sys, edgelm.manifest as m; m.read_manifest(sys.argv[1])" "$MODEL" 2>/dev/null; then
    say "exporting SmolLM2-135M int4 on the host for the guest"
    "${HOSTPY[@]}" -m edgelm.cli export smollm2-135m -o "$MODEL" --quant int4 --force -q
fi
answer="$("$PYWRAP" -m edgelm.cli generate "$MODEL" -p "What is the capital of France?" --max-new-tokens 12 --threads 2)"
say "SmolLM2 int4 on emulated aarch64 ($("$PYWRAP" -c 'from edgelm.runtime import ortops; print(ortops.active_isa())')): $answer"
case "$answer" in
    "The capital of France is Paris."*) ;;
    *) say "expected 'The capital of France is Paris.'"; exit 1 ;;
esac
# The same question under a JSON schema: llguidance's aarch64 wheel computes the masks, the
# cross-built sampling kernel applies them.
printf '%s' '{"type":"object","properties":{"capital":{"type":"string","maxLength":20}},"required":["capital"],"additionalProperties":false}' \
    > "$CACHE/capital.schema.json"
answer="$("$PYWRAP" -m edgelm.cli generate "$MODEL" -p "What is the capital of France? Answer in JSON." \
    --json-schema "$CACHE/capital.schema.json" --max-new-tokens 24 --threads 2)"
say "under a JSON schema: $answer"
"$PYWRAP" -c 'import json, sys; d = json.loads(sys.argv[1]); assert set(d) == {"capital"}, d' "$answer" \
    || { say "the constrained answer is not the schema's JSON"; exit 1; }
say "aarch64 lane passed in $((SECONDS - t0)) s"
