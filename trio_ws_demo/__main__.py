"""``python -m trio_ws_demo``: the same as the ``trio-ws-demo`` command."""

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while still importing: no traceback.
    raise SystemExit(130) from None

raise SystemExit(main())
