"""Training one sweep cell, in whichever process an executor runs it (this one, a worker
process of the local pool, or a Ray worker): the job dict in, an outcome dict out, never an
exception for a failed run."""
from __future__ import annotations

import os

from mtl_platform.errors import UserError


def _quiet(*args, **kwargs) -> None:
    pass


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (the type alone when there is no message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_cell(job: dict) -> dict:
    """Train (or resume, or restart) one cell; return ``{"status": "done", "run_dir": ...}`` or
    ``{"status": "failed", "error": one line}``.

    ``job``: ``action`` (train | resume | restart), ``config``, ``sets``, ``run_dir``; optional
    ``threads`` (torch's intra-op threads), ``plugins`` (in-process plugin objects), and for a
    worker that may not share this process's state: ``cwd`` (the sweep's working folder, where
    relative paths point) and ``env`` (the ``MTL_*`` variables, e.g. ``MTL_CACHE``)."""
    if job.get("env"):
        os.environ.update(job["env"])
    if job.get("cwd"):
        try:
            os.chdir(job["cwd"])
        except OSError as exc:
            return {"status": "failed", "error": f"cannot enter the sweep's folder {job['cwd']} on this worker "
                                                 f"({exc.strerror}); a sweep on a cluster needs a shared filesystem"}
    if job.get("threads"):
        import torch

        torch.set_num_threads(job["threads"])
    from mtl_platform import session
    from mtl_platform.trainer import NonFiniteLoss

    try:
        if job["action"] in ("resume", "restart"):  # without a checkpoint the trainer starts afresh
            results = session.train(resume=job["run_dir"], progress=False, echo=_quiet,
                                    extra_plugins=job.get("plugins", ()))
        else:
            results = session.train(job["config"], sets=job["sets"], progress=False, echo=_quiet,
                                    extra_plugins=job.get("plugins", ()))
    except (NonFiniteLoss, UserError) as exc:
        return {"status": "failed", "error": str(exc).strip().replace("\n", " ")}
    except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the others
        return {"status": "failed", "error": one_line(exc)}
    return {"status": "done", "run_dir": str(results["run_dir"])}
