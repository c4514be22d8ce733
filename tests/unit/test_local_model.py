"""The local model cache: reused when complete, rebuilt when broken."""

from __future__ import annotations

import json
import shutil

import pytest

from cluster import local_model
from cluster.local_model import SMOLLM2, TINY_RANDOM_LLAMA, ensure_local_model, is_ready


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A private cache holding a copy of the already-prepared SmolLM2 (no reconversion)."""
    prepared = ensure_local_model(SMOLLM2)
    monkeypatch.setenv("GIANTSERVE_CACHE", str(tmp_path))
    shutil.copytree(prepared, local_model.model_dir(SMOLLM2))
    return tmp_path


def test_prepared_model_is_ready_and_complete(cache):
    directory = local_model.model_dir(SMOLLM2)
    assert is_ready(directory)
    assert (directory / "model.safetensors").stat().st_size > 200e6
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["rope_theta"] == 100000.0


def test_second_run_reuses_the_copy(cache, monkeypatch):
    def must_not_build(_):
        raise AssertionError("rebuilt a complete cache")

    monkeypatch.setattr(local_model, "_build_smollm2", must_not_build)
    assert ensure_local_model(SMOLLM2) == local_model.model_dir(SMOLLM2)


@pytest.mark.parametrize("damage", ["truncate", "delete", "marker"])
def test_broken_copy_is_detected_and_rebuilt(cache, monkeypatch, damage):
    directory = local_model.model_dir(SMOLLM2)
    if damage == "truncate":
        with open(directory / "model.safetensors", "r+b") as f:
            f.truncate(1000)
    elif damage == "delete":
        (directory / "tokenizer.json").unlink()
    else:
        (directory / "READY").write_text("{not json")
    assert not is_ready(directory)

    rebuilt = []

    def fake_build(out):
        (out / "config.json").write_text("{}")
        rebuilt.append(out)

    monkeypatch.setattr(local_model, "_build_smollm2", fake_build)
    assert ensure_local_model(SMOLLM2) == directory
    assert rebuilt and is_ready(directory)
    assert not (directory / "model.safetensors").exists()  # the broken copy is gone


def test_tiny_random_llama_uses_the_smollm2_tokenizer(cache):
    directory = ensure_local_model(TINY_RANDOM_LLAMA)
    config = json.loads((directory / "config.json").read_text())
    assert config["head_dim"] in (64, 128)  # what the CPU attention backend supports
    assert (directory / "tokenizer.json").read_bytes() == (
        local_model.model_dir(SMOLLM2) / "tokenizer.json"
    ).read_bytes()
    assert is_ready(directory)


def test_unknown_local_model_is_refused():
    with pytest.raises(ValueError, match="known: "):
        local_model.model_dir("nope")
