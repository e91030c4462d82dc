"""Checking that a webhook request comes from market-data-store."""

from __future__ import annotations

import hashlib
import hmac
from typing import Mapping

__all__ = ["SIGNATURE_HEADER", "verify_webhook"]

# Carries "sha256=" and the hex HMAC-SHA256 of the body (internal/feedback/webhook.go).
SIGNATURE_HEADER = "X-MDS-Signature"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for k, v in headers.items():
        if k.lower() == lower:
            return v
    return None


def _bytes(s: str | bytes) -> bytes:
    return s.encode() if isinstance(s, str) else s


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    token: str | bytes | None = None,
    hmac_secret: str | bytes | None = None,
) -> bool:
    """Reports whether a feedback webhook request is authentic.

    With ``token`` (MDS_FB_HTTP_TOKEN) the request must carry
    ``Authorization: Bearer <token>``; with ``hmac_secret``
    (MDS_FB_HTTP_HMAC_SECRET) it must carry ``X-MDS-Signature:
    sha256=<hex HMAC-SHA256 of body>``; with both, both. Pass the raw body as
    received, before any JSON parsing. Comparisons take constant time. The
    body's ts tells when the event was raised, so a receiver can also refuse
    old replays. Header names match in any case.
    """
    if token is None and hmac_secret is None:
        raise ValueError("verify_webhook needs a token, an hmac_secret or both")
    if token is not None:
        got = _header(headers, "Authorization")
        if got is None or not hmac.compare_digest(_bytes(got), b"Bearer " + _bytes(token)):
            return False
    if hmac_secret is not None:
        got = _header(headers, SIGNATURE_HEADER)
        want = "sha256=" + hmac.new(_bytes(hmac_secret), body, hashlib.sha256).hexdigest()
        if got is None or not hmac.compare_digest(_bytes(got.lower()), want.encode()):
            return False
    return True
