"""``python -m ceap_engine.cli`` is the ``ceap`` command."""

from . import main

main()
