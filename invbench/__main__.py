"""`python -m invbench`: the command line."""

import sys

from invbench.cli import main

sys.exit(main())
