"""
C{python -m twisted_rproxy}: the same as the C{rproxy} command.
"""

import sys

from .cli import main

sys.exit(main())
