"""The engine against the floor, a hand-written EW loop, LibMTL and TorchJD, interleaved in one
process (issue 16).

    python bench/engine_floor.py time --tasks 2 8 16 40 [--rounds 3]
    python bench/engine_floor.py memory --tasks 8 16 40

Model: a torchvision ResNet-18 encoder (random init) at 64×64 px, batch 8, m synthetic
regression tasks with linear heads (``bench/weightings.py``'s ``resnet_setup``); one thread.
A step is: zero grads, forward, losses, the method's backward, an SGD step.

- ``hand``: ``sum(losses).backward()`` — what EW costs written by hand;
- ``floor``: one forward and m backward passes (``autograd.grad`` of each loss w.r.t. every
  parameter) — what any method that looks at per-task gradients must at least do;
- ``ours <weighting> <path>``: ``GradientEngine`` in ``param`` mode with the Jacobian path or
  the module-wise accumulated Gramian (``gradients.gramian_path``), or in ``rep`` mode;
- ``torchjd <aggregator>``: TorchJD's ``mtl_backward`` (the Jacobian of the shared parameters)
  then ``jac_to_grad`` with the aggregator;
- ``libmtl <weighting>``: LibMTL's weighting class on the shared parameters (its own
  ``backward``: a loop of ``loss.backward(retain_graph=True)``).

LibMTL and TorchJD are optional (``pip install torchjd LibMTL``, outside the project's
dependencies); their rows are left out when absent. LibMTL 1.1.5 imports a module torchvision
removed (``torchvision.models.utils``); a stand-in with ``torch.hub``'s loader is put in place
before importing it. Each row's time is the median over ``--rounds`` interleaved rounds, after one
warm-up round. ``memory`` runs each configuration in a fresh process and reports its peak
resident memory after three steps.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from weightings import REG, resnet_encoder  # noqa: E402

from mtl_platform.gradients import GradientEngine  # noqa: E402

WEIGHTINGS = ("ew", "pcgrad", "mgda", "cagrad", "upgrad", "nash_mtl", "gh", "gh_plus_plus")
TORCHJD = ("Mean", "PCGrad", "MGDA", "CAGrad", "UPGrad", "NashMTL")
LIBMTL = ("EW", "PCGrad", "MGDA", "CAGrad", "Nash_MTL")


def _torchjd():
    try:
        import torchjd.aggregation as agg
        from torchjd.autojac import jac_to_grad, mtl_backward
    except ImportError:
        return None
    return agg, mtl_backward, jac_to_grad


def _libmtl():
    try:
        import torchvision.models

        if "torchvision.models.utils" not in sys.modules:
            stand_in = types.ModuleType("torchvision.models.utils")
            stand_in.load_state_dict_from_url = torch.hub.load_state_dict_from_url
            sys.modules["torchvision.models.utils"] = stand_in
            torchvision.models.utils = stand_in
        import LibMTL.weighting as lw
    except ImportError:
        return None
    return lw


def methods(m):
    """name → a factory(model, tasks) giving ``backward(losses: dict)``."""
    out = {}

    def hand(model, tasks):
        return lambda losses: sum(losses.values()).backward()

    def floor(model, tasks):
        params = [p for p in model.parameters() if p.requires_grad]

        def backward(losses):
            for i, t in enumerate(tasks):
                torch.autograd.grad(losses[t], params, retain_graph=i < len(tasks) - 1, allow_unused=True)
        return backward

    out["hand"], out["floor"] = hand, floor
    for name in WEIGHTINGS:
        wcls = REG.get("weighting", name).cls
        paths = [("param", "jacobian")] if name == "ew" else [("param", "jacobian"), ("param", "accumulate"),
                                                                ("rep", "jacobian")]
        for mode, path in paths:
            def ours(model, tasks, wcls=wcls, mode=mode, path=path):
                engine = GradientEngine(model, wcls(tasks), tasks, mode, gramian_path=path, echo=lambda s: None)
                return engine.backward
            label = "ew" if name == "ew" else f"{name} {'rep' if mode == 'rep' else path}"
            out[f"ours {label}"] = ours
    tj = _torchjd()
    if tj is not None:
        agg, mtl_backward, jac_to_grad = tj
        for name in TORCHJD:
            def torchjd(model, tasks, name=name):
                aggregator = getattr(agg, name)(**({"c": 0.5} if name == "CAGrad" else
                                                   {"n_tasks": len(tasks)} if name == "NashMTL" else {}))
                shared = [p for p in model.shared_parameters()]

                def backward(losses):
                    mtl_backward([losses[t] for t in tasks], features=model.rep)
                    jac_to_grad(shared, aggregator)
                return backward
            out[f"torchjd {name}"] = torchjd
    lw = _libmtl()
    if lw is not None:
        for name in LIBMTL:
            cls = getattr(lw, name, None)
            if cls is None:
                continue

            def libmtl(model, tasks, cls=cls):
                shim = _libmtl_shim(cls, model, len(tasks))
                kwargs = {"mgda_gn": "none"} if cls.__name__ == "MGDA" else \
                    {"calpha": 0.5, "rescale": 1} if cls.__name__ == "CAGrad" else \
                    {"update_weights_every": 1, "optim_niter": 20, "max_norm": 1.0} if cls.__name__ == "Nash_MTL" else {}
                return lambda losses: shim.backward(torch.stack([losses[t] for t in tasks]), **kwargs)
            out[f"libmtl {name}"] = libmtl
    return out


def _libmtl_shim(cls, model, m):
    """A LibMTL weighting bound to ``model``'s shared parameters, as its Trainer binds it."""

    class Shim(cls):
        def __init__(self):
            cls.__init__(self)
            self.task_num, self.device, self.rep_grad, self.epoch = m, torch.device("cpu"), False, 0
            self.init_param()

        def get_share_params(self):
            return iter(model.shared_parameters())

        def zero_grad_share_params(self):
            for p in model.shared_parameters():
                if p.grad is not None:
                    p.grad.zero_()

    return Shim()


def resnet_setup(m, device, batch=8):
    """``bench/weightings.py``'s ResNet-18 problem; ``losses_fn(model)`` for any copy of the model."""
    from torch import nn

    tasks = [f"t{i}" for i in range(m)]
    torch.manual_seed(0)
    model = REG.get("architecture", "hps").cls(tasks, resnet_encoder, lambda t: nn.Linear(512, 1)).to(device)
    x = torch.randn(batch, 3, 64, 64, device=device)
    y = torch.randn(batch, m, device=device)

    def losses_fn(net):
        def losses():
            out = net(x)
            return {t: (out[t].squeeze(-1) - y[:, i]).pow(2).mean() for i, t in enumerate(tasks)}
        return losses

    return model, tasks, losses_fn


def one_step(model, tasks, losses, backward, opt):
    opt.zero_grad(set_to_none=True)
    backward(losses())
    opt.step()


def time_rows(m, rounds, only=None):
    torch.set_num_threads(1)
    model, tasks, losses_fn = resnet_setup(m, torch.device("cpu"))[:3]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    built, models = {}, {}
    for name, factory in methods(m).items():
        if only and name not in ("hand", "floor") and name not in only:
            continue
        try:
            models[name] = copy.deepcopy(model)  # each its own: the engine's hooks stay on a model
            built[name] = factory(models[name], tasks)
        except Exception as exc:  # an optional peer that does not run here
            print(f"skip {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", file=sys.stderr)
    opts = {name: torch.optim.SGD(models[name].parameters(), lr=1e-4) for name in built}
    times = {name: [] for name in built}
    for r in range(rounds + 1):
        for name, backward in list(built.items()):
            models[name].load_state_dict(state)
            start = time.perf_counter()
            try:
                one_step(models[name], tasks, losses_fn(models[name]), backward, opts[name])
            except Exception as exc:
                print(f"drop {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", file=sys.stderr)
                del built[name], times[name]
                continue
            if r:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def memory_one(m, name):
    torch.set_num_threads(1)
    model, tasks, losses_fn = resnet_setup(m, torch.device("cpu"))[:3]
    backward = methods(m)[name](model, tasks)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    for _ in range(3):
        one_step(model, tasks, losses_fn(model), backward, opt)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("time", "memory", "memory-one"))
    ap.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 16, 40])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", nargs="*", default=None,
                    help="only these rows (besides hand and floor); at m = 40 each Jacobian-path engine keeps "
                         "its m x P buffer, so run a few at a time")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    if args.what == "memory-one":
        print(json.dumps({"mib": memory_one(args.tasks[0], args.name)}))
        return
    for m in args.tasks:
        if args.what == "time":
            rows = time_rows(m, args.rounds, args.methods)
            floor, hand = rows["floor"], rows["hand"]
            print(f"\n### m = {m} (floor {floor * 1e3:.0f} ms, hand EW {hand * 1e3:.0f} ms)\n")
            print("| method | step (ms) | vs floor | vs hand EW |\n|---|---|---|---|")
            for name, t in rows.items():
                print(f"| {name} | {t * 1e3:.0f} | {t / floor:.2f}x | {t / hand:.2f}x |", flush=True)
        else:
            names = args.methods or ["hand", "floor", "ours pcgrad jacobian", "ours pcgrad accumulate",
                                     "ours mgda jacobian", "ours mgda accumulate", "torchjd UPGrad", "libmtl PCGrad"]
            print(f"\n### m = {m}: peak resident memory (MiB)\n\n| method | peak | vs hand EW |\n|---|---|---|")
            base = None
            for name in names:
                res = subprocess.run([sys.executable, __file__, "memory-one", "--tasks", str(m), "--name", name],
                                     capture_output=True, text=True)
                if res.returncode:
                    print(f"| {name} | failed: {res.stderr.strip().splitlines()[-1][:80]} | |", flush=True)
                    continue
                mib = json.loads(res.stdout.strip().splitlines()[-1])["mib"]
                base = base or mib
                print(f"| {name} | {mib:.0f} | {mib / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
