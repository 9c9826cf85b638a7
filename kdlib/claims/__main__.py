import sys

from kdlib.claims.cli import main

sys.exit(main())
