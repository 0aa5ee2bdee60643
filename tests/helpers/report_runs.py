"""Fake finished runs (results.json fields and a metrics.jsonl of test rows) for the report's
figure tests (tests/core/report/test_pareto.py, test_html.py)."""
import json

from mtl_platform import runs

LOWER = {"higher_is_better": False, "in_delta_p": True}


def fake_run(tmp_path, label, seed, final, tasks=("f1", "f2"), stl=(5.0, 5.0), path=(), known=None):
    run_dir = tmp_path / f"{label}_{seed}"
    run_dir.mkdir()
    rows = [{"epoch": i, "step": i + 1, "test": {t: {"value": v} for t, v in zip(tasks, p)}}
            for i, p in enumerate([*path, final])]
    (run_dir / runs.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = {"run_dir": str(run_dir), "config_name": "toy", "group": label, "label": label, "seed": seed,
              "select": "last", "epoch": len(rows) - 1, "spec": {t: {"value": LOWER} for t in tasks},
              "mtl": {t: {"value": v} for t, v in zip(tasks, final)},
              "stl": {t: {"value": v} for t, v in zip(tasks, stl)}}
    if known:
        result["known_front"] = known
    return result
