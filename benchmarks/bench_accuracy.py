"""Accuracy on the synthetic default: the README's table.

Trains configs/default.yaml variants on the embedded synthetic data and prints validation P_MTL against the
generator's oracle (its own noise-free label function on the true latents):
  * concat, the paper's set (ResNet18 + POSTER2 + FAU), T = 16 (the default)
  * concat, all five extractors, T = 16
  * concat, each extractor alone, T = 16                       -> best single extractor
  * concat, all extractors, T = 1 (per frame)                  -> temporal context
  * tokens (the released code's per-frame fusion), all extractors

    python benchmarks/bench_accuracy.py [--epochs 8] [--preset small|easy]

``--preset easy`` measures the previous, easy generator (a quick learnable signal; not s-Aff-Wild2-like).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL = ["resnet18", "poster2", "poster", "eac", "fau"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override configs/default.yaml's epochs")
    parser.add_argument("--preset", default="small", help="synthetic preset (small: calibrated default; easy: the previous)")
    args = parser.parse_args()

    from abaw_hf.data.synthetic import make_synthetic_dataset, synthetic_oracle_score
    from abaw_hf.training import SYNTHETIC_PRESETS, load_train_config, train

    oracle = synthetic_oracle_score(make_synthetic_dataset(**SYNTHETIC_PRESETS[args.preset])["validation"])
    variants = [("concat, paper's set, T=16 (default)", {}), ("concat, all extractors, T=16", {"features": ALL})]
    variants += [(f"concat, {name} only, T=16", {"features": [name]}) for name in ALL]
    variants += [
        ("concat, all extractors, T=1", {"features": ALL, "window": 1}),
        ("tokens, all extractors (per frame)", {"features": ALL, "fusion": "tokens", "window": 1}),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for index, (label, overrides) in enumerate(variants):
            config = load_train_config(ROOT / "configs" / "default.yaml")
            settings = {**overrides, "synthetic_size": args.preset, "output_dir": f"{workdir}/run{index}", "progress": False,
                        "plot": False}
            for key, value in settings.items():
                setattr(config, key, value)
            if args.epochs:
                config.epochs = args.epochs
            best = train(config)["best"]
            rows.append((label, best))
            print(f"{label}: P_MTL {best['p_mtl']:.4f}", flush=True)

    print(f"\nSynthetic preset {args.preset}, validation ({oracle['num_frames']} frames); oracle P_MTL {oracle['p_mtl']:.4f}\n")
    print("| model | CCC V | CCC A | F1 expr | F1 AU | P_MTL | / oracle |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| oracle (noise-free label function) | {oracle['ccc_valence']:.3f} | {oracle['ccc_arousal']:.3f} | "
          f"{oracle['f1_expression']:.3f} | {oracle['f1_au']:.3f} | {oracle['p_mtl']:.4f} | 1.00 |")
    for label, m in rows:
        print(f"| {label} | {m['ccc_valence']:.3f} | {m['ccc_arousal']:.3f} | {m['f1_expression']:.3f} | "
              f"{m['f1_au']:.3f} | {m['p_mtl']:.4f} | {m['p_mtl'] / oracle['p_mtl']:.2f} |")
    default, everything = rows[0][1]["p_mtl"], rows[1][1]["p_mtl"]
    best_single = max(m["p_mtl"] for label, m in rows if " only," in label)
    per_frame = next(m["p_mtl"] for label, m in rows if label == "concat, all extractors, T=1")
    print(f"\nall extractors - best single: {everything - best_single:+.4f}; T=16 - T=1: {everything - per_frame:+.4f}; "
          f"default / oracle: {default / oracle['p_mtl']:.3f}")


if __name__ == "__main__":
    main()
