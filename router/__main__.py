"""python -m router -> the vapi-router command line."""

import sys

from router.cli import main

sys.exit(main())
