"""``python space/app.py`` (a checkout) and ``python app.py`` (a staged Space): serve the Gradio Space
(`abaw_hf.space.app` is the app).

    python space/app.py [--model outputs/abaw-fusion] [--port 7860] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import os

from .predict import DEFAULT_MODEL  # what `make demo` writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The abaw_hf Gradio Space: per-frame valence/arousal, expressions "
                                                 "and action units of a video, an image or a webcam.")
    parser.add_argument("--model", default=os.environ.get("ABAW_MODEL_ID", DEFAULT_MODEL),
                        help="Hub id or local model folder (default: $ABAW_MODEL_ID, else outputs/abaw-fusion)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", 7860))))
    args = parser.parse_args(argv)
    from ..space.app import serve  # gradio loads here, not for --help

    return serve(args.model, host=args.host, port=args.port)
