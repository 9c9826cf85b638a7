"""`python -m kdlib.claims`: the study's verdicts from the run cache (kdlib.verdicts)."""

import sys

from kdlib.verdicts import main

sys.exit(main())
