#!/usr/bin/env bash
# Idempotent set-up for tvm-mpq: system packages, then .venv/ with the package.
# Quiet when everything is already there. Works as root with no input (CI=true).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake make
              dataset-fashion-mnist)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "setup: installing system packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PY" -m venv .venv
fi
# Re-install only when the dependency declaration changed.
stamp=".venv/.tvm-mpq-setup"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
        || ! .venv/bin/python -c "import tvm_mpq" 2>/dev/null; then
    echo "setup: installing Python packages into .venv (first time: a few minutes)" >&2
    log="$(mktemp)"
    pipq() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >>"$log" 2>&1 \
             || { cat "$log" >&2; echo "setup: pip install $* failed" >&2; exit 1; }; }
    pipq --upgrade pip
    # torch==2.13.0 (CPU) installs from a file on these machines; ask for it first
    # so nothing else can pull a CUDA build.
    pipq torch==2.13.0
    pipq -e ".[train,dev,report]"
    rm -f "$log"
    echo "$want" > "$stamp"
fi
