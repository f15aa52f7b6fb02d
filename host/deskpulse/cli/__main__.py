"""`python -m deskpulse.cli`: how tests and tools start a command as its own process."""

import sys

from deskpulse.cli import main

sys.exit(main())
