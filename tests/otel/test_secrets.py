"""OTLP header variables are checked before anything starts, in exactly the format the
SDK's parser accepts, and secrets (header values, endpoint user info) are redacted from
every log record a handler prints, the SDK's included."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.util.re import parse_env_headers

from app.cli import main
from instrumentation.otel.errors import TelemetryConfigError
from instrumentation.otel.headers import check_headers, header_secrets
from instrumentation.otel.redaction import (
    REDACTED,
    Redactor,
    endpoint_secrets,
    protect_logging,
    redact,
)

SECRET = "Tok3nS3cretValue"


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def sdk_accepts(text: str) -> bool:
    """Whether the exporters' own parse (liberal) takes text without skipping anything."""
    logger = logging.getLogger("opentelemetry.util.re")
    warnings = _Warnings()
    logger.addHandler(warnings)
    try:
        parse_env_headers(text, liberal=True)
    finally:
        logger.removeHandler(warnings)
    return warnings.count == 0


def we_accept(text: str) -> bool:
    try:
        check_headers("OTEL_EXPORTER_OTLP_HEADERS", text)
    except TelemetryConfigError:
        return False
    return True


CORPUS = [
    "a=b",
    "a=b,c=d",
    " a = b , c=d ",
    "a=b,",
    ",a=b",
    "authorization=Bearer%20X",
    "authorization=Bearer X",
    "k=v=w",
    "k=",
    "api-key=abc123,x-tenant=t1",
    "authorization: Bearer X",
    "a=b,authorization: Bearer X",
    "=value",
    "a b=c",
    'authorization=Bearer "X"',
    "k=a;b",
    "k=a\\b",
    "k=é",
    "k=\x01",
    "(k)=v",
    "a=b,,c=d",
    "\t",
]


@pytest.mark.parametrize("text", CORPUS)
def test_accepted_exactly_when_the_sdk_parser_accepts(text: str) -> None:
    assert we_accept(text) == sdk_accepts(text)


def test_an_entry_without_equals_is_named_by_position_never_by_value() -> None:
    with pytest.raises(TelemetryConfigError) as raised:
        check_headers("OTEL_EXPORTER_OTLP_HEADERS", f"x-team=ml,authorization: Bearer {SECRET}")
    message = str(raised.value)
    assert message.startswith("OTEL_EXPORTER_OTLP_HEADERS: entry 2 of 2 is not key=value")
    assert SECRET not in message and "Bearer" not in message and "authorization" not in message


def test_a_bad_value_names_its_key_never_the_value() -> None:
    with pytest.raises(TelemetryConfigError) as raised:
        check_headers("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f'authorization=Bearer "{SECRET}"')
    message = str(raised.value)
    assert "header 'authorization' (entry 1 of 1)" in message
    assert "URL-encoded" in message and SECRET not in message


@pytest.mark.parametrize(
    "variable",
    [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    ],
)
def test_train_exits_2_with_one_line_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variable: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(variable, f"authorization: Bearer {SECRET}")
    telemetry = tmp_path / "telemetry"
    code = main(["train", "--dataset", "synthetic", "--telemetry-dir", str(telemetry)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [
        f"esper: error: {variable}: entry 1 of 1 is not key=value (format: "
        "key1=value1,key2=value2 with URL-encoded values); the entry is not shown"
    ]
    assert SECRET not in captured.out + captured.err
    assert not telemetry.exists()


def test_train_exits_2_on_an_endpoint_that_is_not_a_url_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://user:{SECRET}@[::1")
    telemetry = tmp_path / "telemetry"
    code = main(["train", "--dataset", "synthetic", "--telemetry-dir", str(telemetry)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [
        "esper: error: OTEL_EXPORTER_OTLP_ENDPOINT is not a valid URL; the value is not shown"
    ]
    assert SECRET not in captured.out + captured.err
    assert not telemetry.exists()


def test_replay_exits_2_on_a_bad_header(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text("")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization: Bearer {SECRET}")
    assert main(["replay", str(log)]) == 2
    err = capsys.readouterr().err
    assert "OTEL_EXPORTER_OTLP_HEADERS: entry 1 of 1" in err and SECRET not in err


def test_header_secrets_are_the_values_as_written_and_decoded() -> None:
    secrets = header_secrets(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abcdefgh123,x-team=ml",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=k%2Fey",
        }
    )
    assert {"Bearer%20abcdefgh123", "Bearer abcdefgh123", "abcdefgh123", "ml"} <= set(secrets)
    assert {"k%2Fey", "k/ey"} <= set(secrets)


@pytest.mark.parametrize("signal", ["TRACES", "METRICS", "LOGS"])
def test_every_signals_headers_and_endpoint_user_info_are_secrets(signal: str) -> None:
    headers = header_secrets({f"OTEL_EXPORTER_OTLP_{signal}_HEADERS": "api-key=s3cr3tkey"})
    assert "s3cr3tkey" in headers
    endpoint = f"http://bob:hunter22@collector:4318/v1/{signal.lower()}"
    assert "hunter22" in endpoint_secrets({f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT": endpoint})


def test_endpoint_secrets_are_the_user_info() -> None:
    secrets = endpoint_secrets(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://alice:p%40ss@collector:4317",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces",
        }
    )
    basic = base64.b64encode(b"alice:p@ss").decode()
    assert set(secrets) == {"alice:p%40ss", "alice:p@ss", "p%40ss", "p@ss", basic}


def test_redactor_replaces_secrets_and_any_url_user_info() -> None:
    redactor = Redactor()
    redactor.add(["alice:hunter22", "hunter22", "ml"])
    text = (
        "exporting to alice:hunter22@host:4317 and https://bob:pw@other/v1 "
        "with x-team=ml, html hunter22"
    )
    assert redactor.redact(text) == (
        f"exporting to {REDACTED}@host:4317 and https://{REDACTED}@other/v1 "
        f"with x-team={REDACTED}, html {REDACTED}"
    )


@pytest.fixture
def protected() -> Iterator[None]:
    protect_logging(["alice:hunter22", "hunter22", SECRET])
    yield


def test_a_propagated_record_is_redacted_at_the_handler(protected: None) -> None:
    """A record logged by a library's logger reaches the root logger's handlers (added
    before protect_logging ran) with the secret gone, from message, arguments and the
    formatted exception."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    handler = Keep()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        protect_logging([])
        logger = logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter.test")
        try:
            raise ConnectionError(f"target alice:hunter22@127.0.0.1:9 header {SECRET}")
        except ConnectionError:
            logger.error("Failed to export to %s", "alice:hunter22@127.0.0.1:9", exc_info=True)
    finally:
        root.removeHandler(handler)
    assert len(seen) == 1
    assert "Failed to export to ***@127.0.0.1:9" in seen[0]
    assert "ConnectionError" in seen[0]
    assert "hunter22" not in seen[0] and SECRET not in seen[0]


def test_the_last_resort_handler_redacts(
    protected: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no handler configured, as in the CLI, Python prints through lastResort."""
    assert logging.lastResort is not None
    record = logging.LogRecord(
        "opentelemetry.exporter", logging.WARNING, __file__, 1, "retry %s", (SECRET,), None
    )
    logging.lastResort.handle(record)
    err = capsys.readouterr().err
    assert err == f"retry {REDACTED}\n"


def test_redact_uses_the_process_secrets(protected: None) -> None:
    assert redact(f"value {SECRET}") == f"value {REDACTED}"
