"""Make the report screenshots in docs/images/ from real runs (docs/report.md shows them).

    python bench/report_screenshots.py [--out docs/images] [--epochs 10]

1. a sweep of the `pareto_toy` domain (configs/pareto_toy.yaml) over five weightings, from the
   paper's starting point (-8.5, -5), with the STL baselines (`mtl sweep`);
2. `mtl report --html` over its runs: report_pareto.png is copied to docs/images/pareto_toy.png;
3. headless Chromium screenshots report.html (docs/images/report_html.png).

Needs chromium (or chrome) on PATH. Runs in about a minute on one CPU thread. Every figure comes
from this script; nothing is drawn by hand.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTINGS = "ew,mgda,pcgrad,cagrad,nash_mtl"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def mtl(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "mtl_platform.cli", *args], check=True, env=env, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--window", default="1200,4200", help="browser window W,H for the page screenshot")
    args = parser.parse_args()
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        sys.exit("no chromium/chrome on PATH (Debian: apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mtl-screens-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, OMP_NUM_THREADS="1", MTL_CACHE=str(tmp / "cache"), HOME=str(tmp))
        mtl("sweep", "configs/pareto_toy.yaml", "--grid", f"weighting.name={WEIGHTINGS}",
            "--set", "domain.init=[-8.5,-5.0]", "--set", f"train.epochs={args.epochs}",
            "--out", str(tmp / "sweep"), "--no-progress", env=env)
        run_dirs = sorted(str(p) for p in (tmp / "sweep" / "runs").iterdir() if (p / "results.json").exists())
        mtl("report", *run_dirs, "--out", str(tmp / "report"), "--format", "png", "--html", env=env)
        shutil.copyfile(tmp / "report" / "report_pareto.png", args.out / "pareto_toy.png")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={args.window}", f"--screenshot={args.out / 'report_html.png'}",
                        (tmp / "report" / "report.html").as_uri()],
                       check=True, capture_output=True, env=env)
    print(f"wrote {args.out / 'pareto_toy.png'} and {args.out / 'report_html.png'}")


if __name__ == "__main__":
    main()
