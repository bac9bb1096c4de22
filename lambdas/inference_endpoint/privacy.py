"""Identifiers of patients' studies out of logs and traces: a keyed hash stands in for the study id.

HMAC-SHA256 under the stage's key (Secrets Manager, ``LOG_HASH_KEY_SECRET``): the same study gives the
same token in every log line of a stage, so lines can be correlated, but the id cannot be recovered or
guessed by hashing candidate ids without the key. 16 bytes of the MAC (32 hex digits) are kept.
"""

from __future__ import annotations

import hashlib
import hmac

from lambdas.common.env import ConfigurationError

MIN_KEY_LENGTH = 32
TOKEN_HEX_DIGITS = 32


def check_key(key: str) -> bytes:
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigurationError(f"the log hash key must be at least {MIN_KEY_LENGTH} characters")
    return key.encode("utf-8")


def study_token(key: bytes, study_id: str) -> str:
    """The keyed hash of ``study_id`` that logs carry instead of it."""
    return hmac.new(key, study_id.encode("utf-8"), hashlib.sha256).hexdigest()[:TOKEN_HEX_DIGITS]
