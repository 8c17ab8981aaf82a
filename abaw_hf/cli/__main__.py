"""``python -m abaw_hf.cli`` is ``abaw-hf`` (``accelerate launch -m abaw_hf.cli extract ...`` runs it per process)."""

import sys

from . import main

sys.exit(main())
