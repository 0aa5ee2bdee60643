"""Train the quickstart (MultiMNIST, HPS LeNet, 10 epochs, STL baselines) once per registered
weighting and tabulate MTL accuracy per task, Δp, η and wall time.

    python bench/quickstart_weightings.py [--out runs/weightings] [--set key=value ...]

The STL baselines are trained by the first run and reused by the others (same cache key).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from mtl_platform import registry, session
from mtl_platform.metrics import delta_p, eta

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/weightings")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--weightings", nargs="*", default=None)
    args = ap.parse_args()
    reg, _ = registry.load()
    names = args.weightings or reg.names("weighting")
    rows = []
    for name in ["ew"] + [n for n in names if n != "ew"]:
        start = time.perf_counter()
        r = session.train(CONFIG, sets=[f"weighting.name={name}", f"output.root={args.out}", *args.sets],
                          progress=False, echo=lambda *a, **k: None)
        seconds = time.perf_counter() - start
        rows.append((name, r["mtl"]["left"]["accuracy"], r["mtl"]["right"]["accuracy"],
                     delta_p(r["mtl"], r["stl"], r["spec"]), eta(r["mtl"], r["stl"], r["spec"]), seconds))
        print(f"{name}: done in {seconds:.0f} s", flush=True)
    stl = r["stl"]
    print(f"\nSTL accuracy: left {stl['left']['accuracy']:.4f}, right {stl['right']['accuracy']:.4f}\n")
    print("| weighting | left acc | right acc | Δp (%) | η (%) | wall time (s) |\n|---|---|---|---|---|---|")
    for name, left, right, dp, safe, seconds in rows:
        print(f"| {name} | {left:.4f} | {right:.4f} | {dp:+.2f} | {safe:.0f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
