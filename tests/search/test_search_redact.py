"""Credentials in storage URLs never reach messages, logs or files."""
import logging

import pytest

from patsearch.search.redact import RedactingFilter, redact_text, redact_url, scrub, secrets_in
from patsearch.search.storage import StorageError, parse_storage
from patsearch.search.study import open_storage


@pytest.mark.parametrize("url,shown", [
    ("postgresql://alice:s3cret@db:5432/nas", "postgresql://***@db:5432/nas"),
    ("postgresql+psycopg2://bob:p%40ss:w@10.0.0.1/x", "postgresql+psycopg2://***@10.0.0.1/x"),
    ("mysql://u:pw@h/db?ssl=1&password=zz", "mysql://***@h/db?ssl=1&password=***"),
    # A password holding '@' (unencoded): everything before the authority's last '@' goes.
    ("postgresql://user:secret@pw@127.0.0.1:1/db", "postgresql://***@127.0.0.1:1/db"),
    ("postgresql://us@er:se:c@r@et@h/db", "postgresql://***@h/db"),
    # ... or '/', which SQLAlchemy reads as part of the password (to the first '@' after the colon).
    ("postgresql://u:a/b@h/db", "postgresql://***@h/db"),
    ("postgresql://alice@db/nas", "postgresql://***@db/nas"),
    ("https://ghp_tokenvalue@example.org/x", "https://***@example.org/x"),
    ("sqlite:///runs/x/study.db", "sqlite:///runs/x/study.db"),
    ("sqlite:///runs/a@b/study.db", "sqlite:///runs/a@b/study.db"),
    ("postgresql://db/nas?x=a@b", "postgresql://db/nas?x=a@b"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_masks_a_password_with_at_signs_in_free_text():
    text = "cannot open 'postgresql://user:secret@pw@127.0.0.1:1/db': refused (see user@example.org)"
    shown = redact_text(text)
    assert "secret" not in shown and "pw@" not in shown
    assert shown == "cannot open 'postgresql://***@127.0.0.1:1/db': refused (see user@example.org)"


def test_secrets_of_a_password_with_at_signs():
    url = "postgresql://user:secret@pw@127.0.0.1:1/db"
    assert "secret@pw" in secrets_in(url) and "user" not in secrets_in(url)
    assert scrub("FATAL: password 'secret@pw' rejected", url) == "FATAL: password '***' rejected"


def test_scrub_masks_the_part_of_a_password_a_driver_took_for_the_host():
    url = "postgresql://user:s3cret@tail9@127.0.0.1:1/db"
    driver = 'could not translate host name "tail9@127.0.0.1" to address'
    assert scrub(driver, url) == 'could not translate host name "***@127.0.0.1" to address'


def test_scrub_removes_the_literal_secret_anywhere():
    url = "postgresql://alice:p%40ss@db/nas"
    assert set(secrets_in(url)) >= {"p%40ss", "p@ss"}
    text = scrub("FATAL: password p@ss rejected for postgresql://alice:p%40ss@db/nas", url)
    assert "p@ss" not in text and "p%40ss" not in text


def test_logging_filter_masks_records():
    record = logging.LogRecord("optuna", logging.WARNING, __file__, 1, "connect %s failed", ("postgresql://a:b1c2@h/d",),
                               None)
    RedactingFilter("postgresql://a:b1c2@h/d").filter(record)
    assert "b1c2" not in record.getMessage() and "***" in record.getMessage()


def test_storage_errors_are_redacted():
    # Nothing listens on port 9 of loopback: the driver's error must not echo the password.
    spec = parse_storage("postgresql://alice:topsecret99@127.0.0.1:9/nas", "s")
    with pytest.raises(StorageError) as info:
        open_storage(spec)
    message = str(info.value)
    assert "topsecret99" not in message
    assert "postgresql://***@127.0.0.1:9/nas" in message


def test_storage_url_forms(tmp_path):
    assert parse_storage(None, "s1", tmp_path).url == f"sqlite:///{tmp_path}/s1/study.db"
    assert parse_storage("journal:///tmp/a.log", "s").path.as_posix() == "/tmp/a.log"
    assert parse_storage("runs/a.log", "s").kind == "journal"
    assert parse_storage("postgres://u@h/d", "s").url.split("://")[1] == "u@h/d"
    assert parse_storage("postgres://u@h/d", "s").url.startswith("postgresql+psycopg")
    with pytest.raises(StorageError, match="in-memory"):
        parse_storage("sqlite:///:memory:", "s")
    with pytest.raises(StorageError, match="unsupported scheme 'redis'"):
        parse_storage("redis://u:pw@h/0", "s")
