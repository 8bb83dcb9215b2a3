"""``python -m facetubes`` is the ``facetubes`` command."""

import sys

from .cli import main

sys.exit(main())
