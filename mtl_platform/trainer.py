"""The training loop of one stage: epochs, evaluation, metrics, checkpoints, resume
(DESIGN.md §3.4, §8, §10). It never names a method: the domain's ``train_step`` and the
engine do the work, plugins observe through the training-loop hooks.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed, runs
from .batches import to_device
from .checkpoint import atomic_save, load, rng_state, seed_everything, set_rng_state
from .contracts.step import StepOutput
from .errors import UserError
from .experiment import Experiment
from .metrics import delta_p


class NonFiniteLoss(RuntimeError):
    """A task's loss became NaN or infinite; the run stopped, its last checkpoint is intact."""


class Run:
    """What training-loop hooks see of a run."""

    def __init__(self, config: dict, run_dir: Path, stage: str):
        self.config = config
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.epoch = 0
        self.step = 0
        self.stop_reason: str | None = None

    def request_stop(self, reason: str = "requested by a plugin") -> None:
        """Stop after the current epoch (early stopping)."""
        self.stop_reason = reason


class DomainProtocol:
    """The ordinary update protocol: the domain's training batches and its ``train_step`` or,
    when the config names a closure method, that method's step on the domain's loss closure
    (DESIGN.md §3.5).

    A stage with another loop (a bi-level search) passes its own object with the same three
    methods: ``batches(epoch, start)``, ``step(batch)`` (returns the detached task losses) and
    ``flush()`` (apply what an accumulation left pending at the end of an epoch).
    """

    def __init__(self, exp: Experiment):
        self.exp = exp

    def batches(self, epoch: int, start: int):
        return self.exp.domain.loaders("train", epoch=epoch, start=start)

    def step(self, batch) -> dict:
        e = self.exp
        if e.closure is not None:
            return e.closure.step(e.domain.closure(batch, e.model), e.engine, e.optimizers)
        return e.domain.train_step(batch, e.model, e.engine, e.optimizers)

    def flush(self) -> None:
        self.exp.engine.flush(self.exp.optimizers)


def selection_score(val: dict, reference: dict, spec: dict) -> float:
    """Δp (%) of validation metrics against a reference (STL, or the first epoch)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return delta_p(val, reference, spec)


class Trainer:
    """Trains one experiment in ``run_dir``; ``fit`` returns its results."""

    def __init__(self, exp: Experiment, run_dir: Path, pm, stage: str = "main",
                 reference: dict | None = None, extra: dict | None = None, echo=print, protocol=None):
        self.exp = exp
        self.protocol = protocol or DomainProtocol(exp)
        self.cfg = exp.config["train"]
        self.run_dir = Path(run_dir)
        self.pm = pm
        self.run = Run(exp.config, run_dir, stage)
        self.reference = reference
        self.extra = extra or {}
        self.echo = echo
        self.tasks = exp.domain.task_names
        self.spec = exp.domain.spec()
        self.selection_spec = exp.domain.spec(exp.domain.selection_tasks)
        self.rows: list[dict] = []
        device = exp.device
        m = len(self.tasks)
        self.bad_step = torch.full((m,), -1, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(m, dtype=torch.float64, device=device)
        self.loss_count = 0
        self.weight_sum = torch.zeros(m, dtype=torch.float64, device=device)
        self.weight_count = 0
        self.checkpoint_path = self.run_dir / runs.CHECKPOINT_FILE
        self.metrics_path = self.run_dir / runs.METRICS_FILE
        self.diagnostics_path = self.run_dir / runs.DIAGNOSTICS_FILE

    # -- checkpoints ------------------------------------------------------------------------
    def _state(self, epoch: int, batch: int) -> dict:
        e = self.exp
        return {
            "format": 1, "stage": self.run.stage, "epoch": epoch, "batch": batch, "step": self.run.step,
            "world": distributed.world(),  # a resume needs the same number of processes
            "rows": len(self.rows),
            "model": e.model.state_dict(), "weighting": e.weighting.state_dict(),
            "optimizers": [o.state_dict() for o in e.optimizers],
            "scheduler": e.scheduler.state_dict() if e.scheduler is not None else None,
            # each rank's own sum of its shards' losses, one row per rank (a resume continues each)
            "loss_sum": distributed.gather(self.loss_sum) if distributed.world() > 1 else self.loss_sum,
            "loss_count": self.loss_count,
            "weight_sum": self.weight_sum, "weight_count": self.weight_count,
            **{("engine_steps" if k == "steps" else k): v for k, v in e.engine.state_dict().items()},
            "rng": rng_state(),
            "domain": e.domain.save_state(self.checkpoint_path),
        }

    def flush_diagnostics(self) -> None:
        rows = [dict(row, stage=self.run.stage) for row in self.exp.engine.pop_diagnostics()]
        for row in rows:
            runs.append_jsonl(self.diagnostics_path, row)
        if rows:
            self.pm.hook.mtl_diagnostics(run=self.run, rows=rows)

    def save_checkpoint(self, epoch: int, batch: int) -> None:
        self.check_finite()  # never checkpoint a non-finite state
        self.flush_diagnostics()
        atomic_save(self._state(epoch, batch), self.checkpoint_path)
        self.pm.hook.mtl_checkpoint(run=self.run, path=self.checkpoint_path)

    def restore(self) -> tuple[int, int]:
        """Load the checkpoint; return (epoch, batch) to continue from."""
        if not self.checkpoint_path.exists():
            self.echo(f"no checkpoint in {self.run_dir}: the run was stopped before its first checkpoint; "
                      f"starting it again from scratch")
            if distributed.writes():
                self.metrics_path.unlink(missing_ok=True)
                self.diagnostics_path.unlink(missing_ok=True)
            return 0, 0
        try:
            state = load(self.checkpoint_path, map_location=self.exp.device)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{self.checkpoint_path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
        saved_world = state.get("world", 1)
        if saved_world != distributed.world():
            raise UserError(f"--resume {self.run_dir}: the run was trained with {saved_world} process(es), "
                            f"this resume has {distributed.world()}; resume it with --nproc {saved_world}")
        e = self.exp
        e.model.load_state_dict(state["model"])
        e.weighting.load_state_dict(state["weighting"])
        for opt, s in zip(e.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        if e.scheduler is not None:
            e.scheduler.load_state_dict(state["scheduler"])
        self.loss_sum = (state["loss_sum"][distributed.rank()] if distributed.world() > 1
                         else state["loss_sum"]).to(e.device)
        self.loss_count = state["loss_count"]
        self.weight_sum = state["weight_sum"].to(e.device)
        self.weight_count = state["weight_count"]
        self.run.step = state["step"]
        e.engine.load_state_dict({"steps": state["engine_steps"], "micro_steps": state["micro_steps"],
                                  "scaler": state["scaler"]})
        e.domain.load_state(state.get("domain") or {}, self.checkpoint_path)
        runs.truncate_jsonl(self.metrics_path, state["rows"])
        diagnostics = runs.read_jsonl(self.diagnostics_path)
        runs.truncate_jsonl(self.diagnostics_path,
                            sum(1 for r in diagnostics if r["step"] <= state["engine_steps"]))
        self.rows = runs.read_jsonl(self.metrics_path)
        set_rng_state(state["rng"])
        self.echo(f"resuming {self.run.stage} at epoch {state['epoch'] + 1}, batch {state['batch']} "
                  f"(step {state['step']})")
        return state["epoch"], state["batch"]

    # -- non-finite guard ------------------------------------------------------------------
    def check_finite(self) -> None:
        """One host sync: raise if any task's loss was non-finite since the last check (on any
        rank of a distributed run: the earliest step, all ranks agree)."""
        if distributed.world() > 1:
            never = torch.iinfo(self.bad_step.dtype).max
            flags = distributed.min_(torch.where(self.bad_step >= 0, self.bad_step, never))
            self.bad_step = torch.where(flags == never, torch.full_like(flags, -1), flags)
        if bool((self.bad_step >= 0).any()):
            steps = self.bad_step.tolist()
            first = min((s, i) for i, s in enumerate(steps) if s >= 0)
            task = self.tasks[first[1]]
            kept = (f"the last good checkpoint {self.checkpoint_path} is intact"
                    if self.checkpoint_path.exists() else "no checkpoint had been written yet")
            raise NonFiniteLoss(f"non-finite loss of task {task!r} at step {first[0]} "
                                f"({self.run.stage}, epoch {self.run.epoch + 1}); training stopped; {kept}")

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        start_epoch, start_batch = self.restore() if resume else (0, 0)
        if start_epoch == 0 and start_batch == 0 and self.run.step == 0:
            seed_everything(self.cfg["seed"], self.cfg["deterministic"])
        distributed.broadcast_state(self.exp.model)  # every rank starts from rank 0's model
        for opt in self.exp.optimizers:
            opt.zero_grad(set_to_none=True)
        self.pm.hook.mtl_run_start(run=self.run)
        epochs = self.cfg["epochs"]
        if self.rows and self.rows[-1].get("stopped"):
            start_epoch = epochs  # early-stopped before the interruption
        for epoch in range(start_epoch, epochs):
            self.run.epoch = epoch
            self.train_epoch(epoch, start_batch)
            start_batch = 0
            self.end_epoch(epoch)
            if self.run.stop_reason:
                break
        results = self.results()
        runs.write_json(self.run_dir / runs.RESULTS_FILE, results)
        self.pm.hook.mtl_run_end(run=self.run, results=results)
        return results

    def train_epoch(self, epoch: int, start: int) -> None:
        e = self.exp
        e.model.train()
        if hasattr(e.model, "set_epoch"):  # epoch-dependent search schedules (LTB's temperature, warm-up)
            e.model.set_epoch(epoch)
        batches = self.protocol.batches(epoch, start)
        if start == 0:
            self.loss_sum.zero_()
            self.loss_count = 0
            self.weight_sum.zero_()
            self.weight_count = 0
        log_every, ckpt_every = self.cfg["log_every"], self.cfg["checkpoint_every"]
        bar = tqdm(total=start + len(batches), initial=start, leave=False, dynamic_ncols=True,
                   desc=f"{self.run.stage} epoch {epoch + 1}/{self.cfg['epochs']}",
                   disable=not self.cfg["progress"])
        try:
            for i, batch in enumerate(batches, start=start):
                batch = to_device(batch, e.device)
                with self.autocast():
                    out = self.protocol.step(batch)
                losses, weights = (out.losses, out.weights) if isinstance(out, StepOutput) else (out, None)
                vec = torch.stack([losses[t].detach().reshape(()) for t in self.tasks])
                bad = ~torch.isfinite(vec) & (self.bad_step < 0)
                self.bad_step = torch.where(bad, torch.full_like(self.bad_step, self.run.step), self.bad_step)
                self.loss_sum += vec.double()
                self.loss_count += 1
                if weights is not None and weights.shape == self.weight_sum.shape:
                    self.weight_sum += weights.double()
                    self.weight_count += 1
                self.run.step += 1
                if (e.scheduler is not None and getattr(e.scheduler, "per_step", False)
                        and self.run.step % self.cfg["accumulate"] == 0):
                    e.scheduler.step()  # per-iteration schedules (inv)
                bar.update(1)
                if self.run.step % log_every == 0:
                    self.check_finite()
                    self.flush_diagnostics()
                    means = (self.loss_sum / max(self.loss_count, 1)).tolist()
                    bar.set_postfix({t: f"{v:.3f}" for t, v in zip(self.tasks, means)}, refresh=False)
                if ckpt_every and self.run.step % ckpt_every == 0:
                    self.save_checkpoint(epoch, i + 1)
        finally:
            bar.close()
        self.protocol.flush()
        self.check_finite()

    def autocast(self):
        """Mixed precision for the forward and the losses (``train.amp``)."""
        amp = self.cfg["amp"]
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        return torch.autocast(self.exp.device.type, dtype=dtype, enabled=dtype is not None)

    def end_epoch(self, epoch: int) -> None:
        e = self.exp
        mean_losses = distributed.mean_(self.loss_sum / max(self.loss_count, 1))  # the global batches' losses
        e.weighting.epoch_end(mean_losses.to(torch.float32))
        evals = {}
        for split in ("val", "test"):
            # every rank evaluates the whole split (its random draws stay in step with the others');
            # rank 0's figures are everyone's, so selection and early stopping agree across ranks
            evals[split] = distributed.broadcast_object(e.domain.evaluate(e.model, split))
            self.pm.hook.mtl_evaluate(run=self.run, split=split, epoch=epoch, results=evals[split])
        row = {
            "epoch": epoch, "step": self.run.step,
            "lr": e.optimizers[0].param_groups[0]["lr"],
            "train": {"loss": dict(zip(self.tasks, mean_losses.tolist()))},
            "weights": (dict(zip(self.tasks, (self.weight_sum / self.weight_count).tolist()))
                        if self.weight_count else None),  # the epoch's mean task weights
            "val": evals["val"], "test": evals["test"],
        }
        state = e.model.search_state() if hasattr(e.model, "search_state") else {}
        if state:  # a searched architecture's α, gates, ... at the end of this epoch
            row["architecture"] = state
        self.rows.append(row)
        if self.cfg["select"] == "val" and self.best_epoch() == epoch:
            atomic_save(e.model.state_dict(), self.run_dir / "best.pt")
        if e.scheduler is not None and not getattr(e.scheduler, "per_step", False):
            e.scheduler.step()
        self.pm.hook.mtl_epoch_end(run=self.run, epoch=epoch, metrics=row)
        if self.run.stop_reason:
            row["stopped"] = self.run.stop_reason
            self.echo(f"{self.run.stage}: stopping after epoch {epoch + 1}: {self.run.stop_reason}")
        row["time"] = time.time()
        runs.append_jsonl(self.metrics_path, row)
        self.save_checkpoint(epoch + 1, 0)

    # -- selection and results ---------------------------------------------------------------
    def best_epoch(self) -> int:
        if self.cfg["select"] == "last" or not self.rows:
            return self.rows[-1]["epoch"] if self.rows else 0
        reference = self.reference or self.rows[0]["val"]
        scores = [selection_score(r["val"], reference, self.selection_spec) for r in self.rows]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return self.rows[best]["epoch"]

    def results(self) -> dict:
        epoch = self.best_epoch()
        row = next(r for r in self.rows if r["epoch"] == epoch)
        atomic_save(self.exp.model.state_dict(), self.run_dir / "model.pt")
        return {"run_dir": str(self.run_dir), "stage": self.run.stage, "seed": self.cfg["seed"],
                "select": self.cfg["select"], "epoch": epoch, "epochs_trained": len(self.rows),
                "spec": self.spec, "val": row["val"], "test": row["test"], "mtl": row["test"],
                "state": row.get("architecture") or {}, **self.exp.domain.run_info(), **self.extra}

    def selected_weights(self) -> Path:
        best = self.run_dir / "best.pt"
        return best if self.cfg["select"] == "val" and best.exists() else self.run_dir / "model.pt"
