"""``python -m guard_plugin.cli``: the ``guard-plugin`` command."""

from guard_plugin.cli import main

raise SystemExit(main())
