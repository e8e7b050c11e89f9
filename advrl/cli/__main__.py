"""``python -m advrl.cli``: the same as the ``advrl`` command."""

import sys

from advrl.cli import main

sys.exit(main())
