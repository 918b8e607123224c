"""``python -m robustact`` is the ``robustact`` command."""

from robustact.cli import main

raise SystemExit(main())
