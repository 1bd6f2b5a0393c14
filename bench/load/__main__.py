"""``python -m bench.load --plan P --out O``: the generator process (see :mod:`.generator`)."""

import sys

from bench.load.generator import main

if __name__ == "__main__":
    sys.exit(main())
