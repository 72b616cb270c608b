import sys

from pmc_core.cli import main

sys.exit(main())
