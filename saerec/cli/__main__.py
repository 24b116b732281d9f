"""``python -m saerec.cli``: the same as the ``saerec`` command."""

import sys

from . import main

sys.exit(main())
