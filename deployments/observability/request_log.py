"""One structured (JSON) line per request on the `giantserve.requests` logger.

Ids, model, the API key's id (never the key), status, token counts and timings. The
prompt is logged only while that logger is at DEBUG (`GIANTSERVE_REQUEST_LOG_LEVEL=DEBUG`
where the ingress runs).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

logger = logging.getLogger("giantserve.requests")


def _configure() -> None:
    # Its own handler: Ray workers' root logger may sit above INFO, and these lines
    # belong in the replica's log whatever the rest of the logging does.
    logger.setLevel(os.environ.get("GIANTSERVE_REQUEST_LOG_LEVEL", "INFO").upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


_configure()


def prompts_logged() -> bool:
    return logger.isEnabledFor(logging.DEBUG)


def prompt_text(body: dict[str, Any]) -> Any:
    """What the client asked, for debug lines: chat messages or the completion prompt."""
    return body.get("messages", body.get("prompt"))


def log_request(fields: dict[str, Any]) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info(json.dumps(fields, separators=(",", ":")))
