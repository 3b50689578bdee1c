"""``python -m cds_services.analytics [--since DAYS] [--json] [--html PATH]`` (see :mod:`.cli`)."""
import sys

from .cli import main

sys.exit(main())
