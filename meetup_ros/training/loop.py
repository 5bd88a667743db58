"""The one training loop every ``meetup-ros train`` network uses.

Signature (stable)::

    fit(cfg, model, train_data, eval_data, loss_fn, *,
        defaults=None, steps_per_epoch=None, evaluate=None) -> dict[str, float]

- ``cfg``: :class:`~meetup_ros.training.config.TrainConfig` (optimizer, lr, epochs,
  batch_size, momentum, weight_decay, seed, resume, device, out_dir).
- ``model``: the ``nn.Module`` to train (moved to ``cfg.device``).
- ``train_data``, either
    * a map-style ``Dataset`` of ``(inputs, target)`` samples: batched by a ``DataLoader``
      (``batch_size`` per process, reshuffled each epoch from ``cfg.seed + epoch``, split
      across ranks by a ``DistributedSampler``); the loss is ``loss_fn(model(inputs), target)``
      (``inputs`` may be a tuple, passed as ``model(*inputs)``); or
    * a callable ``sample_batch() -> batch`` (any structure of tensors), with
      ``steps_per_epoch`` required; the loss is ``loss_fn(batch)`` and ``loss_fn`` calls the
      model itself. Under DDP the sampler must draw different batches per rank (seed it with
      ``cfg.seed + training.distributed.setup(cfg.device).rank``). If the callable has
      ``state_dict()``/``load_state_dict()``, its state is checkpointed (exact resume).
- ``eval_data``: a ``Dataset`` held out from training, or ``None``; each epoch gives
  ``eval_loss`` (and ``eval_<stat>`` for the loss's stats) and, on the Dataset path for
  integer class targets and (N, K) outputs, ``eval_accuracy``. On the sampler path its
  batches go through ``loss_fn(batch)`` like training batches (they are
  ``(inputs, target)`` collated pairs).
- ``loss_fn``: returns the mini-batch mean loss (a 0-dim tensor, >= 0 for DFW), or
  ``(loss, stats)`` where ``stats`` is a ``dict[str, float]`` averaged into the epoch's
  ``train_<name>`` metrics.
- ``defaults``: ``{"lr": float | {"dfw":..,"sgd":..,"adam":..}, "epochs": int,
  "batch_size": int}`` used where ``cfg`` leaves a value ``None``.
- ``evaluate``: optional ``() -> dict[str, float]`` of further held-out metrics, called each
  epoch after ``eval_data`` (with the model in eval mode); keys get an ``eval_`` prefix.

Each epoch: train (tqdm bar on rank 0), evaluate, append a row to ``out_dir/metrics.csv``
and write ``out_dir/checkpoint.pt`` atomically (model, optimizer, scheduler, epoch, RNG
states, metrics). ``cfg.resume`` continues from that checkpoint if it exists, so 2 epochs and
then ``--resume`` to 4 equals 4 epochs straight; the resumed run steps with its own ``lr``,
``momentum`` and ``weight_decay`` (a value that differs from the checkpoint's is logged as a
warning, old -> new), which its metrics.csv rows and checkpoint record. Launched by
``torchrun`` with several processes it trains data-parallel (gloo on CPU, nccl on CUDA):
gradients and the loss value are averaged across ranks after each backward, so DFW's ``gamma``
and the weights are the same on every rank; only rank 0 writes files. Returns the last
epoch's metrics (``epoch``, ``train_loss``, ``eval_*``, ``lr``, ``gamma`` for DFW,
``time_s``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from meetup_ros.training import checkpoint, distributed
from meetup_ros.training.config import TrainConfig
from meetup_ros.training.metrics import MetricsWriter
from meetup_ros.training.optimizers import make_optimizer, make_scheduler, resolve_lr

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
LossResult = Tensor | tuple[Tensor, Mapping[str, float]]
# A DFW loss below 0 by more than rounding is refused (the trainers' losses are sums of
# non-negative terms; rounding leaves them at worst a few ulps below 0)
NEGATIVE_LOSS_TOLERANCE = 1e-6


class TrainingError(RuntimeError):
    """The loop got inputs it cannot train on (the message names the input and value)."""


def fit(cfg: TrainConfig, model: nn.Module, train_data: Dataset[Any] | Callable[[], Any],
        eval_data: Dataset[Any] | None, loss_fn: Callable[..., LossResult], *,
        defaults: Mapping[str, Any] | None = None, steps_per_epoch: int | None = None,
        evaluate: Callable[[], Mapping[str, float]] | None = None) -> dict[str, float]:
    """Train ``model``; see the module docstring for every argument. Returns final metrics."""
    defaults = dict(defaults or {})
    unknown = set(defaults) - {"lr", "epochs", "batch_size"}
    if unknown:
        raise TrainingError(f"fit: unknown defaults {sorted(unknown)!r}; expected lr, epochs, "
                            "batch_size")
    epochs = int(cfg.epochs or defaults.get("epochs", 10))
    batch_size = int(cfg.batch_size or defaults.get("batch_size", 64))
    lr = resolve_lr(cfg, defaults.get("lr", 0.1))
    sampled = not isinstance(train_data, Dataset)
    if sampled and not callable(train_data):
        raise TrainingError(f"fit: train_data must be a Dataset or a callable, got "
                            f"{type(train_data).__name__!r}")
    if sampled and (steps_per_epoch is None or steps_per_epoch <= 0):
        raise TrainingError(f"fit: a batch-sampling callable needs steps_per_epoch > 0, got "
                            f"{steps_per_epoch!r}")

    if eval_data is not None and not isinstance(eval_data, Dataset):
        raise TrainingError(
            f"fit: eval_data must be a Dataset or None, got {type(eval_data).__name__!r} "
            "(pass a metrics callable as evaluate=...; the signature is fit(cfg, model, "
            "train_data, eval_data, loss_fn, *, defaults, steps_per_epoch, evaluate))")
    ctx = distributed.setup(cfg.device)
    try:
        result = _fit(cfg, ctx, model, train_data, eval_data, loss_fn, epochs=epochs,
                      batch_size=batch_size, lr=lr, sampled=sampled,
                      steps_per_epoch=steps_per_epoch, evaluate=evaluate)
        distributed.barrier(ctx)
        return result
    finally:
        distributed.teardown(ctx)


def _refuse_another_networks_checkpoint(path: Path, state: Any, model: nn.Module) -> None:
    """A folder's checkpoint of another network (another trainer's run, ``--out`` reused) is
    that run's only way to resume: this run would replace it after its first epoch, or fail
    to load it on --resume. Checkpoints older than the ``network`` record pass."""
    config = state.get("config") if isinstance(state, Mapping) else None
    network = config.get("network") if isinstance(config, Mapping) else None
    if network is not None and network != type(model).__name__:
        raise TrainingError(
            f"{str(path)!r} is the checkpoint of a {network} run (another trainer), not of "
            f"{type(model).__name__}: this run would replace it; choose another --out, or "
            "move that run's folder away")


def _restore(path: Path, state: Any, model: nn.Module, optimizer: torch.optim.Optimizer,
             optimizer_name: str, given: frozenset[str] | None = None,
             extra: Mapping[str, str] | None = None) -> None:
    """Load a resume checkpoint's model and optimizer state, or say what does not fit.

    A checkpoint of another network or of another optimizer is a valid file with the wrong
    contents: name the file and the mismatch rather than a bare key or load_state_dict error.
    ``extra`` is this run's ``--set`` values, set beside the checkpoint's when the sizes
    differ.
    """
    if not isinstance(state, Mapping):
        raise TrainingError(f"checkpoint {str(path)!r} holds {type(state).__name__}, not a "
                            "training checkpoint")
    missing = [k for k in ("model", "optimizer", "epoch", "rng") if k not in state]
    if missing:
        raise TrainingError(f"checkpoint {str(path)!r} is not a training checkpoint (no "
                            f"{', '.join(missing)}); weights files cannot be resumed from")
    config = state.get("config") or {}
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        # torch's message spans lines (its first says only "Error(s) in loading"): one line,
        # with the --set values the checkpoint was trained with where it recorded them and
        # those of this run that differ (a changed size, e.g. --set code_dim=8, is the usual
        # cause; naming only the checkpoint's pointed a tester at its --set steps=3), and the
        # tensors that do not fit
        sizes = config.get("extra") if isinstance(config, Mapping) else None
        trained = (f" ({_set_difference(sizes, extra or {})})" if isinstance(sizes, Mapping)
                   else "")
        raise TrainingError(f"checkpoint {str(path)!r} holds weights of another network than "
                            f"{type(model).__name__}, or of one with other sizes than this "
                            f"run's{trained}: {_tensor_mismatch(model, state['model'], exc)}"
                            ) from exc
    saved = config.get("optimizer") if isinstance(config, Mapping) else None
    if saved is not None and saved != optimizer_name:
        raise TrainingError(f"checkpoint {str(path)!r} was trained with --optimizer {saved}, "
                            f"not {optimizer_name}: resume with the same optimizer")
    # what this run asked for: only the options it set (given), or all of them (None)
    requested = [{k: group[k] for k, option in _HYPER_PARAMETERS.items()
                  if k in group and (given is None or option in given)}
                 for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise TrainingError(f"checkpoint {str(path)!r}: its optimizer state cannot be loaded "
                            f"into --optimizer {optimizer_name} (damaged, or of another "
                            f"optimizer or network): {exc}") from exc
    _check_state_shapes(path, optimizer)
    _apply_hyper_parameters(path, optimizer, requested)


def _set_difference(saved: Mapping[str, Any], extra: Mapping[str, str]) -> str:
    """The checkpoint's ``--set`` values and this run's that differ from them, in words."""
    trained = ("it was trained with --set "
               + " ".join(f"{k}={v}" for k, v in sorted(saved.items())) if saved
               else "it was trained with no --set")
    differ = []
    for key in sorted(set(saved) | set(extra)):
        if saved.get(key) == extra.get(key):
            continue
        here = f"{key}={extra[key]}" if key in extra else f"{key} not set"
        there = f"{key}={saved[key]}" if key in saved else "not set (the default)"
        differ.append(f"{here} here, {there} there")
    if not differ:
        return f"{trained}, as this run: the sizes differ otherwise (a changed default?)"
    return f"{trained}; this run's --set differs: {', '.join(differ)}"


def _tensor_mismatch(model: nn.Module, saved: Any, exc: Exception, shown: int = 3) -> str:
    """The tensors of the checkpoint that do not fit ``model``: shapes there and here, names
    missing on either side; torch's message, cut to one line, when ``saved`` is no state
    dict."""
    if not isinstance(saved, Mapping):
        detail = " ".join(str(exc).split())
        return detail if len(detail) <= 400 else detail[:400] + " ..."
    here = model.state_dict()

    def listed(names: list[str]) -> str:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return "; ".join(names[:shown]) + more

    shapes = [f"{k} {tuple(saved[k].shape)} there, {tuple(v.shape)} here"
              for k, v in here.items() if isinstance(saved.get(k), Tensor)
              and saved[k].shape != v.shape]
    parts = []
    if shapes:
        parts.append(f"tensors of other shapes: {listed(shapes)}")
    missing = [k for k in here if k not in saved]
    if missing:
        parts.append(f"not in the checkpoint: {listed(missing)}")
    unexpected = [k for k in saved if k not in here]
    if unexpected:
        parts.append(f"not in this run's network: {listed(unexpected)}")
    return ". ".join(parts) if parts else " ".join(str(exc).split())[:400]


def _check_state_shapes(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Refuse per-parameter optimizer state (SGD's momentum buffer, Adam's moments) whose
    shape is not its parameter's: torch loads it unchecked, and the first step failed inside
    a ``torch._foreach_*`` kernel with a traceback (0-dim entries, Adam's step, are kept)."""
    for k, group in enumerate(optimizer.param_groups):
        for i, p in enumerate(group["params"]):
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.dim() and value.shape != p.shape:
                    raise TrainingError(
                        f"checkpoint {str(path)!r}: the optimizer's {name!r} of parameter {i} "
                        f"of group {k} has shape {tuple(value.shape)}, the parameter "
                        f"{tuple(p.shape)} (a damaged checkpoint?)")


# The hyper-parameters a run's command line sets, by the option that sets them. On resume
# the optimizer's saved state brought back the old ones: a changed --lr, --momentum or
# --weight-decay was logged and written to the checkpoint's config while the old values ran.
_HYPER_PARAMETERS = {"lr": "lr", "initial_lr": "lr", "eta": "lr",
                     "momentum": "momentum", "weight_decay": "weight_decay"}
_OPTIONS = {"lr": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay"}


def _apply_hyper_parameters(path: Path, optimizer: torch.optim.Optimizer,
                            requested: list[dict[str, Any]]) -> None:
    """Put this run's hyper-parameters into the loaded param groups (the optimizer's state,
    momentum buffers and Adam's moments, is kept), with a warning for each that changes."""
    changes: dict[str, str] = {}
    for group, wanted in zip(optimizer.param_groups, requested, strict=True):
        for key, value in wanted.items():
            if key == "lr" and "initial_lr" in wanted:
                continue  # SGD: its schedule sets lr from initial_lr (_fast_forward)
            old = group.get(key)
            if old != value:
                changes[_OPTIONS[_HYPER_PARAMETERS[key]]] = f"{old!r} -> {value!r}"
                group[key] = value
    if changes:
        logger.warning("resuming from %s with this run's %s (the checkpoint's values "
                       "replaced; the optimizer's state is kept)", path,
                       ", ".join(f"{name} {change}" for name, change in changes.items()))


def _say_changed_options(path: Path, saved: Mapping[str, Any],
                         now: Mapping[str, Any]) -> None:
    """Warn, on resume, of each option that differs from the checkpoint's run: they are
    taken as given (the checkpoint then records them as the run's), and a tester's changed
    batch size, seed, data options and bag went on without a word."""
    before = {"--epochs": saved.get("epochs"), "--batch-size": saved.get("batch_size"),
              "--seed": saved.get("seed"), "world size": saved.get("world_size"),
              "--bag": saved.get("bags"),
              **{f"--set {k}": v for k, v in (saved.get("extra") or {}).items()}}
    changes = []
    for name, value in now.items():
        old = before.get(name)
        if old is not None and old != value:
            note = " (not given: the trainer's default)" if name == "--epochs" else ""
            changes.append(f"{name} {old!r} -> {value!r}{note}")
    changes += [f"{name} {value!r} -> (not given)" for name, value in before.items()
                if name.startswith("--set ") and name not in now]
    if changes:
        logger.warning("resuming from %s with options other than its run's, taken as given: "
                       "%s", path, "; ".join(changes))


def output_not_a_file(out_dir: Path, names: Sequence[str] = ()) -> str | None:
    """The first of the files a run writes into ``out_dir`` (the checkpoint, the metrics and
    ``names``) that is there as something other than a file (a folder), or None."""
    for name in (CHECKPOINT_NAME, METRICS_NAME, *names):
        path = Path(out_dir) / name
        if path.exists() and not path.is_file():
            return name
    return None


def _fit(cfg: TrainConfig, ctx: distributed.DistributedContext, model: nn.Module,
         train_data: Any, eval_data: Dataset[Any] | None, loss_fn: Callable[..., LossResult],
         *, epochs: int, batch_size: int, lr: float, sampled: bool,
         steps_per_epoch: int | None, evaluate: Callable[[], Mapping[str, float]] | None,
         ) -> dict[str, float]:
    device = distributed.device_for(ctx, cfg.device)
    out_dir = Path(cfg.out_dir)
    model.to(device)
    distributed.broadcast_module(ctx, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(cfg, params, {cfg.optimizer: lr})
    scheduler = make_scheduler(cfg, optimizer, epochs)

    # ---- resume ----
    start_epoch = 0
    last: dict[str, float] = {}
    ckpt_path = out_dir / CHECKPOINT_NAME
    # a folder there: --resume said "no checkpoint" and the first write after an epoch
    # failed with IsADirectoryError
    blocked = output_not_a_file(out_dir)
    if blocked is not None:
        raise TrainingError(f"{str(out_dir / blocked)!r} exists and is not a file (a folder?); "
                            "fit writes it: move it away or choose another out_dir")
    state = None
    if ckpt_path.is_file():
        try:
            state = checkpoint.load(ckpt_path, map_location=device, what="checkpoint")
        except checkpoint.CheckpointError:
            if cfg.resume:
                raise
            # a fresh run replaces it anyway; said below as a previous run's checkpoint
            state = {}
    _refuse_another_networks_checkpoint(ckpt_path, state, model)
    if cfg.resume and state is not None:
        _restore(ckpt_path, state, model, optimizer, cfg.optimizer, cfg.given, cfg.extra)
        if scheduler is not None:
            _fast_forward(scheduler, optimizer, int(state["epoch"]))
        if sampled and state.get("sampler") is not None and hasattr(train_data,
                                                                   "load_state_dict"):
            train_data.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"], ctx.rank)
        _say_changed_options(ckpt_path, state.get("config") or {}, {
            # more epochs is what a resume is for; the trainer's default standing in for
            # the checkpoint's count is not
            **({"--epochs": epochs} if cfg.epochs is None else {}),
            "--batch-size": batch_size, "--seed": cfg.seed,
            "world size": ctx.world_size, "--bag": [str(b) for b in cfg.bags],
            **{f"--set {k}": v for k, v in cfg.extra.items()}})
        start_epoch = int(state["epoch"])
        last = {"epoch": float(state["epoch"]),
                **{k: float(v) for k, v in state.get("metrics", {}).items()}}
        logger.info("resuming from %s after epoch %d of %d", ckpt_path, start_epoch, epochs)
    else:
        if cfg.resume:
            logger.warning("--resume: no checkpoint at %s, starting from scratch", ckpt_path)
        elif state is not None:  # {} for a damaged one
            # A tester's second run into a folder holding another run replaced it silently.
            # (Another network's checkpoint is refused above; its weights file, under its
            # own name, stays beside this run's.)
            logger.warning("%s holds a previous run's checkpoint; starting from scratch "
                           "(without --resume), it is replaced after this run's first epoch",
                           ckpt_path)
        # seeded per rank so that dropout or augmentations differ between ranks; also on a
        # --resume that finds no checkpoint (a run killed in its first epoch): unseeded, it
        # drew from where the model's initialisation left torch's RNG and differed from a
        # fresh run of the same command
        torch.manual_seed(cfg.seed + ctx.rank)
    # What runs: this run's values, or after a resume the checkpoint's where it set none.
    group0 = optimizer.param_groups[0]
    lr = float(group0.get("initial_lr", group0.get("lr", group0.get("eta", lr))))
    momentum = float(group0.get("momentum", cfg.momentum))
    weight_decay = float(group0.get("weight_decay", cfg.weight_decay))
    writer = (MetricsWriter(out_dir / METRICS_NAME,
                            resume_epoch=start_epoch if cfg.resume else None)
              if ctx.is_main else None)

    loader = None
    sampler: DistributedSampler[Any] | None = None
    if not sampled:
        sampler = DistributedSampler(train_data, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=cfg.seed, drop_last=False)
        loader = DataLoader(train_data, batch_size=batch_size, sampler=sampler)
    logger.info(
        "training %s (%d parameters) with %s lr=%g%s weight_decay=%g for %d epochs, batch "
        "%d%s on %s", type(model).__name__, sum(p.numel() for p in params), cfg.optimizer, lr,
        "" if cfg.optimizer == "adam" else f" momentum={momentum:g}", weight_decay,
        epochs, batch_size, f" x {ctx.world_size} ranks" if ctx.enabled else "", device)

    for epoch in range(start_epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        group = optimizer.param_groups[0]
        epoch_lr = float(group["lr"] if "lr" in group else group["eta"])
        batches = loader if loader is not None else (train_data() for _ in
                                                     range(int(steps_per_epoch or 0)))
        total = len(loader) if loader is not None else steps_per_epoch
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        gamma_sum = torch.zeros((), dtype=torch.float64, device=device)
        stats_sum: dict[str, float] = {}
        # The first non-finite loss of the epoch (step, value), or under DFW the first
        # negative one (its step size assumes a loss >= 0; a negative loss stalls it), kept on
        # the device: a check per step would wait for the device every step.
        bad_step = torch.zeros((), dtype=torch.int64, device=device)
        bad_loss = torch.zeros((), dtype=torch.float64, device=device)
        n_steps = 0
        for batch in _progress(batches, total, f"epoch {epoch}/{epochs}", ctx.is_main):
            batch = _to_device(batch, device)
            step_stats: dict[str, float] = {}

            step_loss: list[Tensor] = []

            def closure(batch: Any = batch, step_stats: dict[str, float] = step_stats,
                        step_loss: list[Tensor] = step_loss) -> Tensor:
                optimizer.zero_grad(set_to_none=True)
                loss, stats = _compute_loss(model, loss_fn, batch, sampled)
                loss.backward()
                distributed.average_gradients(ctx, list(params))
                step_stats.update(stats)
                step_loss.append(distributed.average_scalar(ctx, loss.detach()))
                return step_loss[-1]

            try:
                loss = optimizer.step(closure)  # type: ignore[arg-type]
            except ValueError as exc:
                # DFW refuses a step it has no answer for (a non-finite or negative loss, a
                # non-finite gradient) before changing anything: say where, and what is kept
                if cfg.optimizer != "dfw" or not step_loss:
                    raise
                raise TrainingError(_refused_step_message(
                    exc, float(step_loss[-1]), epoch, n_steps + 1, start_epoch,
                    cfg.out_dir)) from exc
            loss64 = loss.detach().to(torch.float64)  # type: ignore[attr-defined]
            unusable = ~torch.isfinite(loss64)
            if cfg.optimizer == "dfw":
                unusable |= loss64 < -NEGATIVE_LOSS_TOLERANCE
            first_bad = (bad_step == 0) & unusable
            bad_step = torch.where(first_bad, n_steps + 1, bad_step)
            bad_loss = torch.where(first_bad, loss64, bad_loss)
            loss_sum += loss64
            gamma = getattr(optimizer, "last_gamma", None)
            if gamma is not None:
                gamma_sum += gamma.to(device=device, dtype=torch.float64)
            for key, value in step_stats.items():
                stats_sum[key] = stats_sum.get(key, 0.0) + float(value)
            n_steps += 1
        if scheduler is not None:
            scheduler.step()
        if n_steps == 0:
            raise TrainingError(f"fit: epoch {epoch} had no batches (train_data of length "
                                f"{_length(train_data)!r})")
        if int(bad_step):  # every rank sees the same averaged losses; nothing is saved
            raise TrainingError(_bad_loss_message(float(bad_loss), epoch, int(bad_step),
                                                  start_epoch, cfg.out_dir))
        # ---- held-out evaluation ----
        metrics: dict[str, float] = {"train_loss": float(loss_sum) / n_steps, "lr": epoch_lr}
        metrics.update({f"train_{k}": v / n_steps for k, v in stats_sum.items()})
        if cfg.optimizer == "dfw":
            metrics["gamma"] = float(gamma_sum) / n_steps
        model.eval()
        if eval_data is not None:
            metrics.update(_evaluate_dataset(model, loss_fn, eval_data, batch_size, device,
                                             sampled))
        if evaluate is not None:
            with torch.no_grad():
                extra = evaluate()
            metrics.update({(k if k.startswith("eval_") else f"eval_{k}"): float(v)
                            for k, v in extra.items()})
        model.train()
        metrics["time_s"] = time.perf_counter() - t0
        last = {"epoch": float(epoch), **metrics}
        # ---- checkpoint (rank 0 only; every rank holds the same weights) ----
        if ctx.is_main:
            assert writer is not None
            writer.write(epoch, metrics)
            checkpoint.save(ckpt_path, {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "sampler": (train_data.state_dict() if sampled
                            and hasattr(train_data, "state_dict") else None),
                "rng": _rng_state(),
                "metrics": metrics,
                # what ran (on resume, this run's values replace the checkpoint's)
                "config": {"network": type(model).__name__, "optimizer": cfg.optimizer,
                           "lr": lr,
                           "momentum": None if cfg.optimizer == "adam" else momentum,
                           "weight_decay": weight_decay, "epochs": epochs,
                           "batch_size": batch_size, "seed": cfg.seed,
                           "world_size": ctx.world_size, "extra": dict(cfg.extra),
                           "bags": [str(b) for b in cfg.bags]},
            })
            logger.info("epoch %d/%d: %s", epoch, epochs,
                        ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return last


def _bad_loss_message(value: float, epoch: int, step: int, start_epoch: int,
                      out_dir: Path) -> str:
    """Why training stopped, and where its last good state is (if there is one)."""
    if math.isfinite(value):
        cause = ("DFW's step size assumes a loss >= 0 with 0 as the least (a negative loss "
                 "term or weight?)")
    elif step == 1 and epoch == start_epoch + 1:
        cause = ("at the starting weights, before any step: the loss or its data, not the "
                 "step size, is at fault")
    else:
        cause = "the weights are no longer usable (lower the learning rate?)"
    return (f"fit: the training loss is {value} at epoch {epoch}, step {step}; {cause}. "
            f"{_last_good_state(epoch, out_dir)}")


def _refused_step_message(exc: ValueError, value: float, epoch: int, step: int,
                          start_epoch: int, out_dir: Path) -> str:
    if not math.isfinite(value) or value < -NEGATIVE_LOSS_TOLERANCE:
        return _bad_loss_message(value, epoch, step, start_epoch, out_dir)
    return (f"fit: the optimizer refused step {step} of epoch {epoch}: {exc}. "
            f"{_last_good_state(epoch, out_dir)}")


def _last_good_state(epoch: int, out_dir: Path) -> str:
    # epoch 1 failing leaves no checkpoint of this run (an earlier run's may be there: it is
    # not this run's last good state); from epoch 2, or resumed, epoch - 1's is on disk
    if epoch > 1:
        return (f"The last good state is the checkpoint of epoch {epoch - 1} in {out_dir} "
                "(--resume continues from it)")
    return "No checkpoint was written (it failed in the first epoch)"


def _fast_forward(scheduler: Any, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """Put SGD's step schedule, built for this run's total epochs, at ``epoch``.

    The saved schedule is not reloaded: its milestones were placed for the earlier run's
    epoch count, and a resumed run with more epochs should follow its own schedule. (So a
    run of 2 epochs resumed to 4 matches 4 straight epochs exactly for DFW and Adam; for SGD
    only the first 2 epochs' learning rates differ.)
    """
    scheduler.last_epoch = epoch
    drops = sum(count for m, count in scheduler.milestones.items() if m <= epoch)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * scheduler.gamma ** drops
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def _compute_loss(model: nn.Module, loss_fn: Callable[..., LossResult], batch: Any,
                  sampled: bool) -> tuple[Tensor, dict[str, float]]:
    if sampled:
        return _as_loss(loss_fn(batch))
    inputs, target = _split(batch)
    return _compute_loss_on_output(loss_fn, _call(model, inputs), target)


def _compute_loss_on_output(loss_fn: Callable[..., LossResult], output: Tensor,
                            target: Any) -> tuple[Tensor, dict[str, float]]:
    return _as_loss(loss_fn(output, target))


def _as_loss(result: LossResult) -> tuple[Tensor, dict[str, float]]:
    if isinstance(result, tuple):
        loss, stats = result
        return loss, {k: float(v) for k, v in stats.items()}
    return result, {}


def _split(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, list | tuple) or len(batch) != 2:
        raise TrainingError(f"fit: dataset samples must be (inputs, target) pairs, got a "
                            f"{type(batch).__name__} of length {len(batch)!r}"
                            if isinstance(batch, list | tuple) else
                            f"fit: dataset samples must be (inputs, target) pairs, got "
                            f"{type(batch).__name__!r}")
    return batch[0], batch[1]


def _call(model: nn.Module, inputs: Any) -> Tensor:
    return model(*inputs) if isinstance(inputs, list | tuple) else model(inputs)


@torch.no_grad()
def _evaluate_dataset(model: nn.Module, loss_fn: Callable[..., LossResult],
                      data: Dataset[Any], batch_size: int, device: torch.device,
                      sampled: bool) -> dict[str, float]:
    """Mean held-out loss (and stats, and accuracy for class labels) over all of ``data``.

    With a batch-sampling ``train_data`` the held-out batches go through ``loss_fn(batch)``
    like the training ones (no accuracy: the loop never sees the model's output).
    """
    loss_sum, n_total, correct = 0.0, 0, 0
    stats_sum: dict[str, float] = {}
    classify = not sampled
    for batch in DataLoader(data, batch_size=max(batch_size, 256), shuffle=False):
        batch = _to_device(batch, device)
        inputs, target = _split(batch)
        n = int(target.shape[0])
        if sampled:
            output = None
            loss, stats = _compute_loss(model, loss_fn, batch, sampled=True)
        else:
            output = _call(model, inputs)
            loss, stats = _compute_loss_on_output(loss_fn, output, target)
        loss_sum += float(loss) * n
        for key, value in stats.items():
            stats_sum[key] = stats_sum.get(key, 0.0) + value * n
        n_total += n
        if classify and output is not None and output.dim() == 2 \
                and not target.is_floating_point() and target.dim() == 1:
            correct += int((output.argmax(dim=1) == target).sum())
        else:
            classify = False
    total = max(n_total, 1)
    metrics = {"eval_loss": loss_sum / total}
    metrics.update({f"eval_{k}": v / total for k, v in stats_sum.items()})
    if classify and n_total:
        metrics["eval_accuracy"] = correct / n_total
    return metrics


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _progress(iterable: Any, total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None hides the bar when stderr is not a terminal (logs, tests)
    return tqdm(iterable, total=total, desc=desc, leave=False,
                disable=None if enabled else True)


def _length(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values (loadable with ``weights_only=True``)."""
    np_state = cast(tuple[Any, ...], np.random.get_state())
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any], rank: int) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if rank:
        # rank 0's state was saved; keep the other ranks' streams distinct after resume
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()) + rank)
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
