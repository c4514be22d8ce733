"""Write a model's twin into the local cache: `cluster.twins`' config.json, a tokenizer and
a chat template of the model's family. Weights are random (vLLM `load_format: dummy`).

The tokenizer is SmolLM2's BPE (on disk, from `cluster.local_model`) plus, as special
tokens, every marker the families' chat templates and vLLM's tool-call and reasoning
parsers look up: those parsers refuse to start when their tokens are missing, and the
twin must run them. One tokenizer serves every twin; the template makes the family.

Idempotent like `cluster.local_model` (a READY manifest per directory).

    python -m cluster.twin_models kimi-k2.5 glm-4.7-flash   # print the twins' paths
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from cluster.catalog import ModelSpec, get_model
from cluster.local_model import SMOLLM2, cache_root, ensure_built, ensure_local_model
from cluster.twins import twin_config

# Markers of the families' templates and of the parsers the configs name
# (deepseek_r1/deepseek_v3, kimi_k2, glm45/glm47, qwen3/hermes, mistral, llama3_json, olmo3).
PARSER_TOKENS = (
    "<think>", "</think>",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
    "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>", "<|media_pad|>",
    "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
    "<|tool_call_end|>", "<|tool_call_argument_begin|>",
    "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
    "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>",
    "<tool_response>", "</tool_response>",
    "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CALLS]", "[ARGS]",
    "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|python_tag|>", "<functions>", "</functions>", "<function_calls>", "</function_calls>",
)

# One turn format per family, with the real templates' switches: DeepSeek-R1 opens the
# answer with <think>; Kimi's `thinking` and Qwen3's `enable_thinking` close it at once
# when off. Tools are rendered as JSON into the system part, as every family does.
_TOOLS = "{% if tools %}{{ tools | tojson }}{% endif %}"
TEMPLATES = {
    "deepseek": (
        "<｜begin▁of▁sentence｜>{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}"
        "{% endif %}{% endfor %}" + _TOOLS +
        "{% for m in messages %}{% if m.role == 'user' %}<｜User｜>{{ m.content }}"
        "{% elif m.role == 'assistant' %}<｜Assistant｜>{{ m.content }}<｜end▁of▁sentence｜>"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
    ),
    "kimi": (
        "<|im_system|>system<|im_middle|>" + _TOOLS + "<|im_end|>"
        "{% for m in messages %}{% if m.role == 'user' %}<|im_user|>user"
        "{% elif m.role == 'assistant' %}<|im_assistant|>assistant{% else %}<|im_system|>"
        "{{ m.role }}{% endif %}<|im_middle|>{{ m.content }}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}<|im_assistant|>assistant<|im_middle|>"
        "{% if thinking is defined and not thinking %}<think></think>{% else %}<think>"
        "{% endif %}{% endif %}"
    ),
    "glm": (
        "[gMASK]<sop>{% if tools %}<|system|>\n" + _TOOLS + "{% endif %}"
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|><think>{% endif %}"
    ),
    "chatml": (
        "{% if tools %}<|im_start|>system\n" + _TOOLS + "<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
        "{% endif %}{% endif %}"
    ),
    "mistral": (
        "<s>{% if tools %}[AVAILABLE_TOOLS]" + _TOOLS + "[/AVAILABLE_TOOLS]{% endif %}"
        "{% for m in messages %}{% if m.role == 'system' %}[SYSTEM_PROMPT]{{ m.content }}"
        "[/SYSTEM_PROMPT]{% elif m.role == 'user' %}[INST]{{ m.content }}[/INST]"
        "{% else %}{{ m.content }}</s>{% endif %}{% endfor %}"
    ),
    "llama3": (
        "<|begin_of_text|>{% if tools %}<|start_header_id|>system<|end_header_id|>\n\n"
        + _TOOLS + "<|eot_id|>{% endif %}{% for m in messages %}<|start_header_id|>"
        "{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{% endif %}"
    ),
}


# MoonViT's preprocessing (Kimi K2.5) for the twin's vision tower: the real patch geometry,
# but few patches per image, so that vLLM's start-up profiling of the encoder stays cheap.
_KIMI_MEDIA = {
    "media_proc_cfg": {
        "patch_size": 14,
        "merge_kernel_size": [2, 2],
        "temporal_merge_kernel_size": 4,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "in_patch_limit": 256,
        "patch_limit_on_one_side": 32,
        "in_patch_limit_each_frame": 256,
        "in_patch_limit_video": 1024,
        "fixed_output_tokens": None,
    }
}


def family(spec: ModelSpec) -> str:
    """The chat-template family of a catalog model."""
    if "MistralLarge3ForCausalLM" in spec.architectures:
        return "mistral"
    return {
        "deepseek_v3": "deepseek",
        "qwen2": "deepseek",  # the R1 distills use R1's template
        "kimi_k25": "kimi",
        "glm4_moe_lite": "glm",
        "qwen3": "chatml",
        "qwen3_moe": "chatml",
        "olmo3": "chatml",
        "llama": "llama3",
    }[spec.model_type]


def twin_dir(catalog_id: str) -> Path:
    """Named by what the twin is made of, so a change to its recipe writes a new one."""
    spec = get_model(catalog_id)
    recipe = json.dumps(
        [twin_config(spec, 0, 0, 0), TEMPLATES[family(spec)], PARSER_TOKENS, _KIMI_MEDIA],
        sort_keys=True,
    )
    return cache_root() / "twins" / f"{spec.id}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def ensure_twin(catalog_id: str) -> Path:
    """The twin directory of a catalog model, written first if missing or broken."""
    spec = get_model(catalog_id)
    return ensure_built(twin_dir(spec.id), lambda out: _write_twin(spec, out))


def _write_twin(spec: ModelSpec, out: Path) -> None:
    from tokenizers import AddedToken, Tokenizer

    source = ensure_local_model(SMOLLM2)
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in PARSER_TOKENS])
    tokenizer.save(str(out / "tokenizer.json"))
    settings = json.loads((source / "tokenizer_config.json").read_text())
    settings.pop("added_tokens_decoder", None)
    settings.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
    (out / "chat_template.jinja").write_text(TEMPLATES[family(spec)])
    # Round up like real checkpoints do: a vocabulary that is a multiple of 64.
    vocab = -(-tokenizer.get_vocab_size(with_added_tokens=True) // 64) * 64
    config = twin_config(
        spec,
        vocab,
        bos_token_id=tokenizer.token_to_id(settings["bos_token"]),
        eos_token_id=tokenizer.token_to_id(settings["eos_token"]),
    )
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if "vision_config" in config:
        (out / "preprocessor_config.json").write_text(json.dumps(_KIMI_MEDIA, indent=2))


def main(argv: list[str]) -> None:
    for catalog_id in argv:
        print(f"{catalog_id}: {ensure_twin(catalog_id)}")


if __name__ == "__main__":
    main(sys.argv[1:])
