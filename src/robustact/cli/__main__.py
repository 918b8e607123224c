"""``python -m robustact.cli ...``: the ``robustact`` command without the console script."""

import sys

from robustact.cli import main

sys.exit(main())
