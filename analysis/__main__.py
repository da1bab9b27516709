"""`python -m analysis ...` is the same as `se-analysis ...` (handy under torchrun)."""

import sys

from analysis.cli import main

sys.exit(main())
