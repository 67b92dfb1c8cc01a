"""Keep credentials in storage URLs out of messages, logs and files.

``postgresql://alice:s3cret@db:5432/nas`` is shown as ``postgresql://alice:***@db:5432/nas``; password-like query
parameters (``?password=...``) are masked too. :func:`scrub` removes a known secret from arbitrary text, e.g. an
exception message from a database driver that echoes its connection string.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
_SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword", "api_key", "apikey")
# scheme://user:password@host  (the password may itself contain ':' but not '@' unless percent-encoded)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<tail>@)")
_QUERY = re.compile(r"(?P<head>[?&;](?:" + "|".join(_SECRET_KEYS) + r")=)(?P<pw>[^&;\s'\"]+)", re.IGNORECASE)


def redact_url(url: str | None) -> str:
    """The URL with its password (and password-like query parameters) replaced by ``***``."""
    if not url:
        return url or ""
    return redact_text(str(url))


def redact_text(text: str) -> str:
    """Mask every ``scheme://user:password@`` and ``password=`` occurrence in free text."""
    text = _USERINFO.sub(lambda m: m.group("head") + MASK + m.group("tail"), text)
    return _QUERY.sub(lambda m: m.group("head") + MASK, text)


def secrets_in(url: str | None) -> list[str]:
    """The literal secrets carried by a URL (password, password-like query values), for :func:`scrub`."""
    if not url:
        return []
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_KEYS and v]
    except ValueError:
        pass
    match = _USERINFO.search(url)
    if match:
        found.append(match.group("pw"))
    # Also the percent-decoded forms, which drivers may echo back.
    from urllib.parse import unquote

    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str | None = None) -> str:
    """``text`` with URL credentials masked and, if ``url`` is given, its literal secrets removed anywhere."""
    text = redact_text(str(text))
    for secret in secrets_in(url):
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks credentials in every record (Optuna and SQLAlchemy log URLs at times)."""

    def __init__(self, url: str | None = None) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        clean = scrub(message, self.url)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def install_log_redaction(url: str | None) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to the root, patsearch, optuna and sqlalchemy loggers and their handlers."""
    flt = RedactingFilter(url)
    for name in ("", "patsearch", "optuna", "sqlalchemy", "alembic"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) and f.url == url for f in logger.filters):
            logger.addFilter(flt)
        for handler in logger.handlers:
            handler.addFilter(flt)
    return flt
