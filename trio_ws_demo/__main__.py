"""``python -m trio_ws_demo``: the same as the ``trio-ws-demo`` command."""

from .cli import main

raise SystemExit(main())
