"""Distributed data-parallel training under torchrun (issue 20, DESIGN.md §3.7): CPU, gloo,
2 processes launched by ``python -m torch.distributed.run`` running tests/helpers/ddp_worker.py.

- after k steps, 2 processes with batch b each equal 1 process with batch 2b (1e-6 in every
  parameter) for EW, PCGrad, MGDA and GH in ``param`` mode and GH in ``rep`` mode, and both
  ranks' parameters and logged task weights are identical;
- a 2-process run interrupted after a checkpoint and resumed by a new launch ends bit-for-bit
  like an uninterrupted one (model and metrics rows);
- only rank 0 writes (an audit hook sees every write each rank makes), STL baselines included;
- ``--nproc`` beyond the machine, or a resume with another number of processes: one line, exit 2.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import assert_one_line_error
from mtl_platform import batches, distributed, session

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "ddp_worker.py"
B = 4  # the batch of each rank; the single-process reference uses 2 B

BASE = {
    "domain": {"name": "synthetic_regression", "dim": 8, "hidden": [16, 8], "train_samples": 32,
               "val_samples": 16, "test_samples": 16, "batch_size": B, "eval_batch_size": 6},
    "architecture": "hps",
    "weighting": "ew",
    "optimizer": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 2, "seed": 0, "device": "cpu", "progress": False, "log_every": 1, "checkpoint_every": 2},
}
CASES = {"ew": ("ew", "param"), "pcgrad": ("pcgrad", "param"), "mgda": ("mgda", "param"),
         "gh": ("gh", "param"), "gh_rep": ("gh", "rep")}


def write_config(path: Path, root: Path, weighting="ew", mode="param", batch=B, **sections) -> Path:
    cfg = json.loads(json.dumps(BASE))
    cfg["weighting"] = weighting
    cfg["gradients"] = {"mode": mode}
    cfg["domain"]["batch_size"] = batch
    cfg["output"] = {"root": str(root)}
    for key, value in sections.items():
        cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def torchrun(tmp_path: Path, jobs: list[dict], name: str, nproc: int = 2) -> list:
    """Run ``jobs`` in ``nproc`` processes (STL cache in ``tmp_path/watched/cache``); return each
    job's per-rank records."""
    spec = tmp_path / f"{name}.json"
    records = tmp_path / "records"
    records.mkdir(exist_ok=True)
    for i, job in enumerate(jobs):
        job["record"] = str(records / f"{name}{i}")
    spec.write_text(json.dumps({"watch": str(tmp_path / "watched"), "jobs": jobs}))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path),
               MTL_CACHE=str(tmp_path / "watched" / "cache"))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", str(nproc), str(WORKER), str(spec)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [[json.loads(Path(f"{job['record']}.rank{r}.json").read_text()) for r in range(nproc)] for job in jobs]


def single(config: Path, run_dirs: dict | None = None, name: str = "") -> dict:
    results = session.train(config, echo=lambda *a, **k: None)
    if run_dirs is not None:
        run_dirs[name] = Path(results["run_dir"])
    return torch.load(Path(results["run_dir"]) / "model.pt", weights_only=True)


def metric_rows(run_dir) -> list[dict]:
    """The evaluated metrics of every epoch (val and test) of a run's metrics.jsonl."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{split: row[split] for split in ("val", "test")} for row in rows]


def as_tensors(params: dict) -> dict:
    return {k: torch.tensor(v) for k, v in params.items()}


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One 2-process launch: the runs of CASES, a PCGrad run interrupted after the checkpoint
    of step 6, and a run with STL baselines; plus the single-process references of CASES."""
    tmp = tmp_path_factory.mktemp("ddp")
    runs = {name: tmp / "watched" / name for name in (*CASES, "cut", "stl")}
    jobs = [{"config": str(write_config(tmp / f"{name}.yaml", runs[name], w, mode))} for name, (w, mode) in CASES.items()]
    jobs.append({"config": str(write_config(tmp / "cut.yaml", runs["cut"], "pcgrad")), "interrupt_at": 6})
    jobs.append({"config": str(write_config(tmp / "stl.yaml", runs["stl"], "ew", baselines={"stl": True},
                                            train=dict(BASE["train"], epochs=1)))})
    records = dict(zip([*CASES, "cut", "stl"], torchrun(tmp, jobs, "first")))
    torch.set_num_threads(1)
    reference_dirs: dict = {}
    reference = {name: single(write_config(tmp / f"{name}_1.yaml", tmp / "single", w, mode, batch=2 * B),
                              reference_dirs, name)
                 for name, (w, mode) in CASES.items()}
    return {"tmp": tmp, "runs": runs, "records": records, "reference": reference, "reference_dirs": reference_dirs}


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_with_batch_b_equal_one_with_2b(launched, case):
    rank0, rank1 = launched["records"][case]
    reference = launched["reference"][case]
    ddp = as_tensors(rank0["params"])
    assert set(ddp) == set(reference)
    for key, value in reference.items():
        torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-6, msg=f"{case}: {key}")
    # every rank holds the same model and logged the same task weights
    assert rank0["params"] == rank1["params"]
    assert rank0["weights"] == rank1["weights"] and rank0["weights"][0] is not None


@pytest.mark.parametrize("case", ["ew", "gh"])
def test_sharded_evaluation_reduces_to_the_single_process_metrics(launched, case):
    """Each rank evaluates every other batch of the 16 samples (3 batches of 6: rank 0 two, rank 1
    one), and the summed metric sums give the single process's figures of the whole split."""
    ddp = metric_rows(launched["records"][case][0]["run_dir"])
    one = metric_rows(launched["reference_dirs"][case])
    assert len(ddp) == len(one) == BASE["train"]["epochs"]
    for a, b in zip(ddp, one):
        for split in ("val", "test"):
            for task, metrics in b[split].items():
                for key, value in metrics.items():
                    assert a[split][task][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (split, task, key)


def test_evaluation_share_is_round_robin_and_only_with_a_batch_for_every_rank(monkeypatch):
    chunks = list(torch.arange(10).split(3))  # 4 batches
    whole = batches.Batches(None, chunks)
    monkeypatch.setattr(distributed, "world", lambda: 3)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    share = distributed.evaluation_share(whole)
    assert [c.tolist() for c in share.chunks] == [[3, 4, 5]]
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    assert [c.tolist() for c in distributed.evaluation_share(whole).chunks] == [[0, 1, 2], [9]]
    monkeypatch.setattr(distributed, "world", lambda: 5)  # fewer batches than ranks: no sharing
    assert distributed.evaluation_share(whole) is None
    monkeypatch.setattr(distributed, "world", lambda: 1)
    assert distributed.evaluation_share(whole) is None


def test_the_compared_models_trained(launched, tmp_path):
    """Control: the compared models are not their initialisation (training moved them)."""
    cfg = write_config(tmp_path / "still.yaml", tmp_path / "still", "ew", optimizer={"name": "sgd", "lr": 1e-30})
    untrained = single(cfg)
    assert max((launched["reference"]["ew"][k] - untrained[k]).abs().max().item() for k in untrained) > 1e-3


def test_only_rank_0_writes_files(launched):
    rank0, rank1 = launched["records"]["ew"]
    assert rank1["writes"] == []
    assert any("checkpoint.pt" in w for w in rank0["writes"])  # the audit hook sees rank 0's writes
    assert any("metrics.jsonl" in w for w in rank0["writes"])


def test_resumed_two_process_run_ends_bit_for_bit_like_an_uninterrupted_one(launched):
    whole = launched["records"]["pcgrad"]
    cut = launched["records"]["cut"]
    assert cut[0]["run_dir"] is None and cut[1]["writes"] == []
    (interrupted,) = [p for p in launched["runs"]["cut"].iterdir() if p.is_dir()]
    assert torch.load(interrupted / "checkpoint.pt", weights_only=True)["step"] == 6
    (resumed,) = torchrun(launched["tmp"], [{"resume": str(interrupted)}], "resume")
    assert resumed[0]["params"] == whole[0]["params"] and resumed[1]["params"] == whole[0]["params"]

    def rows(run_dir):
        return [{k: v for k, v in r.items() if k != "time"} for r in
                (json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines())]
    assert rows(interrupted) == rows(whole[0]["run_dir"])
    assert resumed[1]["writes"] == []


def test_stl_baselines_train_distributed_and_only_rank_0_caches_them(launched):
    rank0, rank1 = launched["records"]["stl"]
    cache = launched["tmp"] / "watched" / "cache" / "stl"
    entries = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert len(entries) == 3 and not any(e.startswith(".") for e in entries)  # one per task, no leftovers
    assert rank1["writes"] == [] and any("cache" in w for w in rank0["writes"])
    assert rank0["params"] == rank1["params"]


def test_shard_takes_contiguous_equal_slices_of_every_global_batch():
    chunks = batches.batch_indices(11, 4, shuffle=True, seed=3, epoch=1)  # 4, 4, 3
    first, second = distributed.shard(chunks, 0, 2), distributed.shard(chunks, 1, 2)
    assert [c.tolist() for c in first] == [chunks[0][:2].tolist(), chunks[1][:2].tolist(), chunks[2][:1].tolist()]
    assert [c.tolist() for c in second] == [chunks[0][2:].tolist(), chunks[1][2:].tolist(), chunks[2][1:2].tolist()]
    assert [c.tolist() for c in distributed.shard(batches.batch_indices(5, 4, shuffle=False), 1, 2)] == [[2, 3]]
    assert distributed.shard(chunks, 0, 1) == chunks


def test_nproc_beyond_the_machine_is_one_line_and_exit_2(tmp_path):
    from mtl_platform.launch import capacity

    config = write_config(tmp_path / "c.yaml", tmp_path / "runs")
    limit, _ = capacity("cpu")
    proc = subprocess.run([sys.executable, "-m", "mtl_platform.cli", "train", str(config), "--nproc", str(limit + 1)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, rf"--nproc: got {limit + 1}; this machine allows")
    assert not (tmp_path / "runs").exists()


def test_resume_with_another_number_of_processes_is_one_line_and_exit_2(tmp_path, capsys):
    from mtl_platform.cli import main

    config = write_config(tmp_path / "c.yaml", tmp_path / "runs", train=dict(BASE["train"], epochs=1))
    torch.set_num_threads(1)
    run_dir = Path(session.train(config, echo=lambda *a, **k: None)["run_dir"])
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["world"] = 2  # as if it had been trained by two processes
    torch.save(state, run_dir / "checkpoint.pt")
    with pytest.raises(SystemExit) as exc:  # through torchrun's launcher: refused before it starts
        main(["train", "--resume", str(run_dir), "--nproc", "1"])
    out, err = capsys.readouterr()
    assert_one_line_error(exc.value.code, out, err, r"trained with 2 process\(es\), this resume has 1")
    with pytest.raises(SystemExit) as exc:  # directly (as under a torchrun started by hand)
        main(["train", "--resume", str(run_dir)])
    out, err = capsys.readouterr()
    assert_one_line_error(exc.value.code, out, err, r"trained with 2 process\(es\), this resume has 1")
