"""The Space's entry point: the app itself is ``abaw_hf.space.app``, installed from the wheel in ``wheels/``."""

import sys

from abaw_hf.cli.space import main

if __name__ == "__main__":
    sys.exit(main())
