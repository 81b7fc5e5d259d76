"""Keyed pseudonyms for patient and slide ids (HMAC-SHA256).

Used by :mod:`hemoflow.jobs` (a job's ids replaced before any work) and
:mod:`hemoflow.report` (ids replaced in a report written later); one definition, so a
pseudonym in a job's outputs equals the one in its report.
"""

from __future__ import annotations

import hashlib
import hmac

from hemoflow.errors import HemoflowError

__all__ = ["pseudonymize"]


def pseudonymize(patient_id: str, key: bytes, *, prefix: str = "P-", length: int = 12) -> str:
    """Keyed pseudonym of an identifier: ``prefix`` + the first ``length`` hex digits of
    HMAC-SHA256(key, id).

    The same key always maps an id to the same pseudonym; without the key the id cannot
    be recovered or confirmed by hashing guesses.

    Examples
    --------
    >>> pseudonymize("patient-001", b"secret")
    'P-326cf52d675e'
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise HemoflowError("pseudonymize_key must be non-empty bytes")
    if not 4 <= int(length) <= 64:
        raise HemoflowError(f"length must be between 4 and 64, got {length!r}")
    digest = hmac.new(bytes(key), str(patient_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[: int(length)]
