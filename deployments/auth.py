"""API keys of the shared ingress: loaded from a secret, kept only as hashes.

The secret (the file `auth.keys_file`, else the environment variable `auth.keys_env`) is
a JSON object of named keys:

    {"team-a": {"key": "sk-...", "models": ["smollm2-135m-instruct"], "tokens_per_min": 50000},
     "ops":    {"sha256": "<hex digest of the key>", "models": ["*"]}}

A key is given in clear (`key`) or already hashed (`sha256`); either way only its SHA-256
digest is kept in memory, and presented keys are compared digest to digest with
`hmac.compare_digest` over every entry, so neither the comparison time nor an early exit
tells how much of a guess was right. Logs name a key by its entry name, never its value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from deployments.config import AuthConfig, RateLimits, StrictModel

logger = logging.getLogger("giantserve.auth")

ANY_MODEL = "*"


class ApiKeyEntry(StrictModel):
    key: str | None = Field(None, min_length=16, description="the key in clear")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="its hex digest")
    models: list[str] = Field(default_factory=lambda: [ANY_MODEL], description="'*': every model")
    requests_per_min: int | None = Field(None, ge=1)
    tokens_per_min: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_form(self) -> ApiKeyEntry:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of key, sha256")
        return self

    def digest(self) -> bytes:
        return bytes.fromhex(self.sha256) if self.sha256 else _digest(self.key or "")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's entry name (safe to log), its models and its limits."""

    name: str
    models: frozenset[str]
    limits: RateLimits

    def may_use(self, model: str) -> bool:
        return ANY_MODEL in self.models or model in self.models


class AuthError(ValueError):
    """The secret is missing or malformed; the message never contains key material."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """Verifies bearer keys. `None` keys mean auth is off: everyone is `anonymous`."""

    def __init__(self, entries: dict[str, ApiKeyEntry] | None, default_limits: RateLimits):
        self._default_limits = default_limits
        self._entries = None if entries is None else [
            (entry.digest(), self._principal(name, entry)) for name, entry in entries.items()
        ]

    def _principal(self, name: str, entry: ApiKeyEntry) -> Principal:
        limits = RateLimits(
            requests_per_min=entry.requests_per_min or self._default_limits.requests_per_min,
            tokens_per_min=entry.tokens_per_min or self._default_limits.tokens_per_min,
        )
        return Principal(name, frozenset(entry.models), limits)

    @property
    def enabled(self) -> bool:
        return self._entries is not None

    def verify(self, authorization: str | None) -> Principal | None:
        """The caller for an `Authorization` header value, or None for no or a bad key."""
        if self._entries is None:
            return Principal("anonymous", frozenset([ANY_MODEL]), self._default_limits)
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        presented = _digest(key.strip())
        found = None
        for digest, principal in self._entries:  # no early exit: same work for every key
            if hmac.compare_digest(presented, digest):
                found = principal
        return found


def load_key_ring(config: AuthConfig, default_limits: RateLimits) -> KeyRing:
    if config.mode == "off":
        logger.warning(
            "AUTH IS OFF: every client may call every model without a key "
            "(set ingress.auth.mode: api_keys for anything but local use)"
        )
        return KeyRing(None, default_limits)
    if config.keys_file:
        try:
            raw = Path(config.keys_file).read_text()
        except OSError as error:
            raise AuthError(f"ingress.auth.keys_file: cannot read it ({error.strerror})") from None
        where = "ingress.auth.keys_file"
    else:
        raw = os.environ.get(config.keys_env, "")
        where = f"environment variable {config.keys_env} (ingress.auth.keys_env)"
        if not raw:
            raise AuthError(f"{where} is empty or unset, and ingress.auth.mode is api_keys")
    return KeyRing(parse_keys(raw, where), default_limits)


def parse_keys(raw: str, where: str) -> dict[str, ApiKeyEntry]:
    try:
        document = json.loads(raw)
    except ValueError:
        raise AuthError(f"{where}: not a JSON object of named keys") from None
    if not isinstance(document, dict) or not document:
        raise AuthError(f"{where}: expected a non-empty JSON object of named keys")
    entries = {}
    for name, value in document.items():
        try:
            entries[name] = ApiKeyEntry.model_validate(value)
        except ValidationError as error:
            # Field names and messages only: pydantic's input echo would print the key.
            problems = "; ".join(
                f"{'.'.join(map(str, p['loc'])) or 'entry'}: {p['msg']}"
                for p in error.errors(include_input=False, include_url=False)
            )
            raise AuthError(f"{where}: key {name!r}: {problems}") from None
    return entries
