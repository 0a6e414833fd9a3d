"""The `esper` command line: `esper train` runs a morphogenetic training job, `esper
replay` sends a recorded event log to an OpenTelemetry endpoint, and `esper report` writes
it as a self-contained HTML page.

`parser` declares the commands and flags without loading torch, the OpenTelemetry SDK or
plotly, which `lazy` and `report` import when a command runs; `train`, `replay` and
`report` run them. For a training run, `startup` checks its input before any work starts,
`config` turns the flags into a RunConfig, `resume` reads the checkpoint it continues,
`run_span` opens the span every batch trace links to, `progress` runs the batches under a
progress bar, `run_record` writes run.json, and `summary` prints what a finished run did,
ending with `where_to_look`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from app.cli.errors import USAGE_ERROR, UsageError
from app.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `esper` alone: what it can do
        parser.print_help()
        return 0
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as error:
        print(f"esper: error: {error}", file=sys.stderr)
        return USAGE_ERROR
