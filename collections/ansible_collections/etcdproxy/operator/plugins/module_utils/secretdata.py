"""Text in and out of a Secret's ``data`` (base64): what is missing or unreadable reads as empty."""

from __future__ import annotations

import base64
from typing import Any


def b64d(value: str | None) -> str:
    try:
        return base64.b64decode(value or "").decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def b64e(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_text(obj: dict[str, Any] | None) -> dict[str, str]:
    """Every key of a Secret (or None) decoded to text."""
    return {k: b64d(v) for k, v in ((obj or {}).get("data") or {}).items()}
