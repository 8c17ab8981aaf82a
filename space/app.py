"""Serve the Space from a checkout: ``python space/app.py [--model outputs/abaw-fusion] [--port 7860]``.

The app is ``abaw_hf.space.app``, its command line ``abaw_hf.cli.space``; a staged Space runs the same call from
``abaw_hf/space_template/app.py``.
"""

import sys

from abaw_hf.cli.space import main

if __name__ == "__main__":
    sys.exit(main())
