"""`python -m app` runs the `esper` command line."""

import sys

from app.cli import main

sys.exit(main())
