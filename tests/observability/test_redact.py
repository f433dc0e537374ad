"""Scrubbing secrets out of log events, and client-address pseudonyms."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from firewatch.observability.logging import configure_logging
from firewatch.observability.redact import _PATTERNS, Pseudonymizer, scrub_event, scrub_text
from firewatch.settings import LogFormat

SECRETS = [
    "hunter2-correct-horse",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz",
    "fw_live_4f9a1c2b3d4e5f60718293a4",
    "s3cr3t-db-pass",
    "dXNlcjpwYXNzd29yZA==",
]


def test_scrub_text_recognises_each_kind_of_secret() -> None:
    text = (
        "login password=hunter2-correct-horse "
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz "
        "key fw_live_4f9a1c2b3d4e5f60718293a4 "
        "dsn postgresql://app:s3cr3t-db-pass@db:5432/prod "
        "basic Basic dXNlcjpwYXNzd29yZA=="
    )
    cleaned = scrub_text(text)
    for secret in SECRETS:
        assert secret not in cleaned
    assert "postgresql://[redacted]@db:5432/prod" in cleaned
    assert "login" in cleaned  # the rest of the message survives


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # a refresh token (fwr_...) is a session credential like an API key
        ("refresh failed for fwr_Zk3v9QpL0sXw7YtRbN2mC4dE", "Zk3v9QpL0sXw7YtRbN2mC4dE"),
        # libpq/asyncpg accept an unencoded "@" in the password: the host is after the last
        ("connect postgresql://app:p@ss-w0rd-tail@db:5432/prod", "ss-w0rd-tail"),
        # a quoted value is secret up to its closing quote, spaces included
        ("password = 'correct horse battery'", "horse battery"),
        ('{"api_key": "k1 k2-secret-tail", "n": 1}', "k2-secret-tail"),
        # ... and holding the other quote character
        ('password="it\'s my-secret-tail"', "my-secret-tail"),
        ("token='say \"hi\" then-secret-tail'", "then-secret-tail"),
        # the other words that name secrets (README: cookie, dsn, ...) in key=value text
        ("Cookie: sid=abcdef123456; Path=/", "abcdef123456"),
        ("credential=abcdef123456", "abcdef123456"),
        ("private_key=abcdef123456", "abcdef123456"),
        ("dsn=abcdef123456", "abcdef123456"),
    ],
)
def test_scrub_text_leaves_no_part_of_these_secrets(text: str, secret: str) -> None:
    cleaned = scrub_text(text)
    assert secret not in cleaned, cleaned
    assert "[redacted]" in cleaned


def test_scrub_event_redacts_secret_keys_at_any_depth() -> None:
    event = scrub_event(
        None,
        "info",
        {
            "event": "user login",
            "password": "hunter2-correct-horse",
            "headers": {"X-API-Key": "anything", "accept": "application/json"},
            "attempts": 3,
            "urls": ["https://u:s3cr3t-db-pass@host/x"],
        },
    )
    assert event == {
        "event": "user login",
        "password": "[redacted]",
        "headers": {"X-API-Key": "[redacted]", "accept": "application/json"},
        "attempts": 3,
        "urls": ["https://[redacted]@host/x"],
    }


def test_pseudonyms_are_stable_per_key_and_hide_the_address() -> None:
    a, b = Pseudonymizer(b"k" * 32), Pseudonymizer(b"other-key-0123456789")
    assert a("203.0.113.7") == a("203.0.113.7")
    assert a("203.0.113.7") != a("203.0.113.8")
    assert a("203.0.113.7") != b("203.0.113.7")
    assert "203.0.113.7" not in a("203.0.113.7")


def test_stdlib_lines_are_scrubbed_json() -> None:
    """Library logs (stdlib logging, as uvicorn and asyncpg use) leave as scrubbed JSON."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("info", LogFormat.JSON)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        logging.getLogger("uvicorn.error").info(
            "connect to %s failed", "redis://:s3cr3t-db-pass@cache:6379/0"
        )
        try:
            raise ValueError("bad token fw_live_4f9a1c2b3d4e5f60718293a4")
        except ValueError:
            logging.getLogger("asyncpg").exception("query failed password=hunter2-correct-horse")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [ln["logger"] for ln in lines] == ["uvicorn.error", "asyncpg"]
    assert "ValueError" in lines[1]["exception"]
    for secret in SECRETS:
        assert secret not in stream.getvalue()


def test_stamps_come_after_scrubbing_and_caller_values_are_still_scrubbed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Level, time and trace ids are added after scrubbing (firewatch makes them, so
    there is nothing to scrub); a caller's own value under one of those names, or any
    other, is scrubbed all the same."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("info", LogFormat.JSON)
    ids = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False)
    try:
        log = structlog.get_logger("probe")
        log.info("outside", span_id="Bearer abcdefghijklmnop", note="password=hunter2-horse")
        with trace.use_span(NonRecordingSpan(ids)):
            log.info("inside", trace_id="Bearer abcdefghijklmnop")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()
    out = capsys.readouterr().err
    outside, inside = (json.loads(line) for line in out.strip().splitlines()[-2:])
    assert "abcdefghijklmnop" not in out
    assert "hunter2" not in out
    assert outside["level"] == "info"
    assert outside["timestamp"].endswith("Z")
    assert outside["span_id"] == "Bearer [redacted]"  # no span: the caller's, scrubbed
    assert "trace_id" not in outside
    assert inside["trace_id"] == f"{0xABC:032x}"
    assert inside["span_id"] == f"{0xDEF:016x}"


def _scrub_every_pattern(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_FRAGMENTS = st.sampled_from(
    [
        "Bearer ",
        "BASIC ",
        "token ",
        "Token=",
        "fw_",
        "eyJ",
        "eyj",
        "://",
        "PassWord",
        "passwd:",
        "SECRET",
        "api_key",
        "api-key",
        "APIKEY",
        "authorization",
        "signature",
        "=",
        ":",
        " ",
        '"',
        "'",
        "@",
        "/",
        ".",
        "-",
        "_",
        "abcdef123456",
        "x",
        "é",
        "\n",
        "\u017f",  # long s: re.IGNORECASE equates it with "s"
        "\u0131",  # dotless i: equated with "i"
        "\u212a",  # Kelvin sign: equated with "k"
        "ba\u017fic ",
        "to\u212aen ",
        "pa\u017fsword=",
        "postgresql",
        "fwr_",
        "cookie",
        "credential",
        "private_key",
        "dsn",
        "user",
        "host",
        "GET /api/v1/incidents/{ref}",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=12).map("".join))
def test_the_prefilter_never_changes_what_is_scrubbed(text: str) -> None:
    """scrub_text skips the substitutions when no trigger literal occurs: that must be
    exactly the texts none of the patterns would have changed."""
    assert scrub_text(text) == _scrub_every_pattern(text)
