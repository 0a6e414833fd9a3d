"""`esper replay PATH`: a recorded run's event log (a run directory, or a log file) sent to
the OTLP endpoint."""

from __future__ import annotations

import argparse
import sys

from app.cli.errors import UsageError
from instrumentation.jsonl_reader import LogLineError
from instrumentation.otel import (
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    TelemetryConfigError,
    configure_opentelemetry,
)
from instrumentation.otel.console_warnings import warnings_below_the_bar
from instrumentation.replay import LogReplayer
from instrumentation.replay_input import (
    ReplayInputError,
    check_destination,
    replay_log_sets,
    run_id_for,
)


@warnings_below_the_bar
def replay_command(args: argparse.Namespace) -> int:
    try:
        log_sets = replay_log_sets(args.events)
        check_destination()
        run_id = args.run_id or run_id_for(args.events)
        otel = configure_opentelemetry(run_id, install_globally=False)
        replayer = LogReplayer(otel, run_id, log_sets, _report_skipped_line)
    except (ReplayInputError, TelemetryConfigError) as error:
        raise UsageError(str(error)) from None
    status = "completed"
    try:
        replayer.replay()
    except KeyboardInterrupt:
        status = "interrupted (Ctrl-C)"
    finally:
        finished = otel.shutdown(DEFAULT_SHUTDOWN_TIMEOUT_S)
    print(replayer.summary(status, finished, DEFAULT_SHUTDOWN_TIMEOUT_S), file=sys.stderr)
    return 130 if status != "completed" else replayer.exit_code(finished)


def _report_skipped_line(error: LogLineError) -> None:
    print(f"esper: skipped {error}", file=sys.stderr)
