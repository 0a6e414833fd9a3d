"""The `esper` command line: `esper train` runs a morphogenetic training job, `esper
replay` sends a recorded event log to an OpenTelemetry endpoint.

`parser` declares the commands and flags; `train` and `replay` run them, `startup` checks
a training run's input before any work starts, `config` turns the flags into a RunConfig,
`run_span` opens the span every batch trace links to, `progress` runs the batches under a
progress bar, and `summary` prints what a finished run did.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from app.cli.errors import USAGE_ERROR, UsageError
from app.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as error:
        print(f"esper: error: {error}", file=sys.stderr)
        return USAGE_ERROR
