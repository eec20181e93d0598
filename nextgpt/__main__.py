"""``python -m nextgpt`` (and ``accelerate launch -m nextgpt train ...``): the ``nextgpt`` command line."""
import sys

from nextgpt.cli import main

sys.exit(main())
