import sys

from likra.cli import main

sys.exit(main())
