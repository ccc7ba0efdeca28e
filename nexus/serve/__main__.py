"""`python -m nexus.serve checkpoint=PATH_OR_HUB_ID [key=value ...]` (see `nexus.serve.cli`)."""

import sys

from nexus.serve.cli import main

sys.exit(main())
