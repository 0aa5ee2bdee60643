"""Step time of every registered weighting relative to EW, in both gradient modes, and the
cost of per-task gradient extraction (batched VJPs vs a loop of backward(retain_graph=True)).

    python bench/weightings.py quickstart [--steps 30]
    python bench/weightings.py resnet --tasks 2 8 [--steps 3] [--weightings ew gh mgda]
    python bench/weightings.py extraction --tasks 2 4 8 16 40
    python bench/weightings.py memory --tasks 8 40 --weightings ew gh

(a) ``quickstart``: MultiMNIST, HPS LeNet, batch 128. (b) ``resnet``: a torchvision ResNet-18
encoder (random init, 4 stages) at 64×64 px, batch 8, m synthetic regression tasks with
linear heads. Step = zero grads, forward, losses, ``engine.backward``, optimizer step.
``memory`` runs each configuration in a fresh process and reports its peak resident memory
(CPU) or peak CUDA allocation. Prints markdown tables; figures go into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from mtl_platform import registry
from mtl_platform.contracts import StagedEncoder
from mtl_platform.gradients import GradientEngine
from mtl_platform.gradients.jacobian import task_jacobian

REG, _ = registry.load()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def resnet_encoder():
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    stages = [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1), net.layer2, net.layer3,
              nn.Sequential(net.layer4, net.avgpool, nn.Flatten())]
    return StagedEncoder(stages, out_shape=(512,))


def resnet_setup(m, device, batch=8):
    hps = REG.get("architecture", "hps").cls
    tasks = [f"t{i}" for i in range(m)]
    torch.manual_seed(0)
    model = hps(tasks, resnet_encoder, lambda t: nn.Linear(512, 1)).to(device)
    x = torch.randn(batch, 3, 64, 64, device=device)
    y = torch.randn(batch, m, device=device)

    def losses():
        out = model(x)
        return {t: (out[t].squeeze(-1) - y[:, i]).pow(2).mean() for i, t in enumerate(tasks)}

    return model, tasks, losses


def quickstart_setup(device):
    from mtl_platform.batches import to_device
    from mtl_platform.config import resolve
    from mtl_platform.experiment import build_domain

    cfg = resolve({"domain": {"name": "multi_mnist", "batch_size": 128}}, REG, name="bench")
    domain = build_domain(cfg, REG)
    batches = [to_device(b, device) for b in domain.loaders("train", epoch=0)]
    torch.manual_seed(0)
    model = REG.get("architecture", "hps").cls(domain.task_names, domain.encoder_factory,
                                                 domain.head_factory).to(device)
    state = {"i": 0}

    def losses():
        state["i"] += 1
        return domain.losses(batches[state["i"] % len(batches)], model)

    return model, domain.task_names, losses


def step_time(model, tasks, losses, name, mode, steps, device, warmup=2):
    weighting = REG.get("weighting", name).cls(tasks).to(device)
    engine = GradientEngine(model, weighting, tasks, mode=mode, echo=lambda *_: None)
    opt = torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        engine.backward(losses())
        opt.step()
        weighting.after_step(lambda: {k: v.detach() for k, v in losses().items()})

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def table(rows, ew):
    print("| weighting | needs | param ms | param vs EW | rep ms | rep vs EW |\n|---|---|---|---|---|---|")
    for name, needs, tp, tr in rows:
        print(f"| {name} | {needs} | {tp * 1e3:.1f} | {tp / ew[0]:.2f}x | {tr * 1e3:.1f} | {tr / ew[1]:.2f}x |")


def run_modes(setup, names, steps, device, repeats=3):
    rows, ew = [], None
    for name in ["ew"] + [n for n in names if n != "ew"]:
        times = []
        for mode in ("param", "rep"):
            model, tasks, losses = setup()
            times.append(statistics.median(step_time(model, tasks, losses, name, mode, steps, device)
                                           for _ in range(repeats)))
        if name == "ew":
            ew = times
        rows.append((name, REG.get("weighting", name).cls.needs.name, *times))
    return rows, ew


def extraction(m_values, device, repeats=3):
    print("| m | loop of backward(retain_graph) + flatten, ms | batched VJP, ms | speed-up |\n|---|---|---|---|")
    for m in m_values:
        model, tasks, losses = resnet_setup(m, device)
        shared = model.shared_parameters()

        def loop():
            vec = torch.stack(list(losses().values()))
            rows = []
            for i in range(m):
                model.zero_grad(set_to_none=True)
                vec[i].backward(retain_graph=i < m - 1)
                rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                       for p in shared]))
            return torch.stack(rows)

        def batched():
            return task_jacobian(torch.stack(list(losses().values())), shared)

        out = {}
        for label, fn in (("loop", loop), ("batched", batched)):
            fn()
            sync(device)
            ts = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                sync(device)
                ts.append(time.perf_counter() - start)
            out[label] = statistics.median(ts)
        print(f"| {m} | {out['loop'] * 1e3:.0f} | {out['batched'] * 1e3:.0f} | {out['loop'] / out['batched']:.2f}x |")


def peak_memory(m, name, mode, device):
    """Run one resnet configuration in this process and return its peak memory in MiB."""
    model, tasks, losses = resnet_setup(m, device)
    step_time(model, tasks, losses, name, mode, 2, device, warmup=1)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["quickstart", "resnet", "extraction", "memory", "_memory_one"])
    ap.add_argument("--tasks", type=int, nargs="*", default=[2, 8])
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--weightings", nargs="*", default=None)
    ap.add_argument("--mode", default="param")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    names = args.weightings or REG.names("weighting")
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    if args.case == "quickstart":
        rows, ew = run_modes(lambda: quickstart_setup(device), names, args.steps or 30, device, args.repeats)
        print("(a) quickstart: MultiMNIST, HPS LeNet, batch 128, median of", args.repeats, "repeats\n")
        table(rows, ew)
    elif args.case == "resnet":
        for m in args.tasks:
            print(f"\n(b) ResNet-18 at 64 px, batch 8, m = {m} tasks\n")
            rows, ew = run_modes(lambda: resnet_setup(m, device), names, args.steps or 3, device, args.repeats)
            table(rows, ew)
    elif args.case == "extraction":
        print("per-task gradients w.r.t. the ResNet-18 encoder (11.2 M parameters), batch 8, 64 px\n")
        extraction(args.tasks, device, args.repeats)
    elif args.case == "memory":
        print("| m | weighting | mode | peak memory, MiB |\n|---|---|---|---|")
        for m in args.tasks:
            for name in names:
                for mode in ("param", "rep"):
                    out = subprocess.run([sys.executable, __file__, "_memory_one", "--tasks", str(m),
                                          "--weightings", name, "--mode", mode, "--device", args.device],
                                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                    print(f"| {m} | {name} | {mode} | {json.loads(out):.0f} |")
    else:
        print(json.dumps(peak_memory(args.tasks[0], names[0], args.mode, device)))


if __name__ == "__main__":
    main()
