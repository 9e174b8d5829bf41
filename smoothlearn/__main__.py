"""``python -m smoothlearn``: the same as the ``smoothlearn`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
