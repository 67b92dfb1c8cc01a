"""Keep credentials in storage URLs out of messages, logs and files.

``postgresql://alice:s3cret@db:5432/nas`` is shown as ``postgresql://***@db:5432/nas``: the whole user-info part
(everything before the authority's last ``@``) is masked, whatever it holds, since a password may itself contain
``@`` or ``:``. Password-like query parameters (``?password=...``) are masked too. :func:`scrub` removes a known
secret from arbitrary text, e.g. an exception message from a database driver that echoes its connection string.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
_SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword", "api_key", "apikey")
# scheme:// and the rest of the URL up to whitespace or a quote (a URL quoted in free text ends there).
_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'\"<>]+)")
_QUERY = re.compile(r"(?P<head>[?&;](?:" + "|".join(_SECRET_KEYS) + r")=)(?P<pw>[^&;\s'\"]+)", re.IGNORECASE)


def redact_url(url: str | None) -> str:
    """The URL with its password (and password-like query parameters) replaced by ``***``."""
    if not url:
        return url or ""
    return redact_text(str(url))


def userinfo_end(rest: str) -> int:
    """Where the user-info of a URL's part after ``scheme://`` ends (the index of its ``@``), -1 if it has none.

    The larger of the two readings: urllib's (the last ``@`` before the path) and SQLAlchemy's (a password runs to
    the first ``@`` after ``user:`` and may hold ``/``), so a password neither parser reads whole is still masked.
    """
    if rest.startswith("/"):  # sqlite:///path@x: no authority, an '@' there belongs to the path
        return -1
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    end = authority.rfind("@")
    sqlalchemy = re.match(r"[^:/]*(?::[^@]*)?@", rest)
    return max(end, sqlalchemy.end() - 1 if sqlalchemy else -1)


def redact_text(text: str) -> str:
    """Mask the user-info of every ``scheme://...@host`` URL and every ``password=`` value in free text."""

    def mask(m: re.Match) -> str:
        rest = m.group("rest")
        end = userinfo_end(rest)
        return m.group("head") + (rest if end < 0 else MASK + rest[end:])

    return _QUERY.sub(lambda m: m.group("head") + MASK, _URL.sub(mask, text))


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
    match = _URL.search(url)
    end = userinfo_end(match.group("rest")) if match else -1
    if end > 0:  # the password as either parser reads it (a lone user name is no secret to hunt for in text)
        userinfo = match.group("rest")[:end]
        if ":" in userinfo:
            found += [userinfo, userinfo.split(":", 1)[1]]
            # A driver that splits at the first '@' takes the rest of the password for the host and echoes it
            # ("could not translate host name "pw@127.0.0.1""): mask each such piece with its '@'.
            found += [piece + "@" for piece in userinfo.split(":", 1)[1].split("@")[1:]]
    # Also the percent-decoded forms, which drivers may echo back.
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str | None = None) -> str:
    """``text`` with URL credentials masked and, if ``url`` is given, its literal secrets removed anywhere."""
    text = redact_text(str(text))
    for secret in secrets_in(url):
        text = text.replace(secret, MASK + "@" if secret.endswith("@") else MASK)
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
