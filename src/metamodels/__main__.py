"""``python -m metamodels`` (what ``torchrun ... -m metamodels train ...`` launches on every rank)."""

import sys

from metamodels import cli

sys.exit(cli.main())
