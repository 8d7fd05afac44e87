"""The training loop: plain PyTorch over in-memory tensors. Imports neither Ray nor MLflow.

One :class:`Trainer` is one training run. Callers (the ``train`` command, a Ray Tune
trial, a benchmark) construct it from the resolved config as plain dicts, call
:meth:`Trainer.fit` with an ``on_epoch`` callback, and read the :class:`FitResult`.
:meth:`Trainer.checkpoint` / :meth:`Trainer.restore` capture everything needed to
continue a run exactly where it stopped (a retried trial).
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sweeplab.build import (
    build_loss,
    build_lr_schedule,
    build_metrics,
    build_model,
    build_optimizer,
    build_penalty,
    check_output,
)
from sweeplab.data import DataBundle
from sweeplab.data.bundle import REGRESSION
from sweeplab.metrics import EPOCH, EPOCH_TIME, LR, TRAIN_ACC, TRAIN_LOSS, TRAIN_PENALTY, VAL_LOSS
from sweeplab.objective import Mode, Objective
from sweeplab.status import TrialStatus

COMPLETED, EARLY_STOPPED, DIVERGED = TrialStatus.completed, TrialStatus.early_stopped, TrialStatus.diverged


# ---------------------------------------------------------- early stopping
class EarlyStopping:
    """Stop when (optionally smoothed) validation loss stops improving by ``min_delta``.

    Validation loss is bumpy; a moving average over ``smoothing`` epochs keeps one
    lucky or unlucky epoch from deciding. The best weights are those of the lowest
    raw validation loss (the earlier of equals).
    """

    objective = Objective(VAL_LOSS, Mode.min)

    def __init__(
        self, enabled: bool = True, patience: int = 5, min_delta: float = 0.0, smoothing: int = 1, **_
    ):
        self.enabled, self.patience, self.min_delta = enabled, patience, min_delta
        self.window: deque[float] = deque(maxlen=max(1, smoothing))
        self.best_smoothed = self.objective.worst
        self.best_raw = self.objective.worst
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record one epoch; returns True when it holds the best weights so far."""
        self.window.append(val_loss)
        smoothed = sum(self.window) / len(self.window)
        if self.objective.is_improvement(smoothed, self.best_smoothed, self.min_delta):
            self.best_smoothed, self.bad_epochs = smoothed, 0
        else:
            self.bad_epochs += 1
        if self.objective.better(val_loss, self.best_raw):
            self.best_raw, self.best_epoch = val_loss, epoch
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return self.enabled and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, deque) else v) for k, v in vars(self).items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, deque(v, maxlen=self.window.maxlen) if k == "window" else v)


# What a checkpoint restores of a schedule and of early stopping; the rest are settings (from the config).
_SCHEDULE_PROGRESS = frozenset(
    {
        "last_epoch",
        "_step_count",
        "_is_initial",
        "_get_lr_called_within_step",
        "_last_lr",
        "best",
        "cooldown_counter",
        "num_bad_epochs",
    }
)
_STOPPER_SETTINGS = frozenset({"enabled", "patience", "min_delta"})


# ------------------------------------------------------------------ result
@dataclass
class FitResult:
    status: TrialStatus  # completed | early_stopped | diverged
    reason: str
    history: list[dict[str, float]] = field(default_factory=list)  # one dict of metrics per epoch
    best_epoch: int | None = None
    test: dict[str, float] = field(default_factory=dict)  # test/loss, test/acc on the best weights

    @property
    def best(self) -> dict[str, float]:
        return next((h for h in self.history if h[EPOCH] == self.best_epoch), {})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu"
        )
    return torch.device(name)


# ----------------------------------------------------------------- evaluator and trainer
class Evaluator:
    """A model on one :class:`DataBundle`'s tensors, measured on its splits. A chosen model's test
    pass needs no optimizer (whose first use in a process imports torch's compiler: 1.4 s).

    The task decides the loss unless ``loss`` names one, and the metrics: accuracy for classes;
    mean squared and absolute error for regression; plus every metric of the ``metrics`` config."""

    def __init__(self, cfg: Mapping[str, Any], data: DataBundle, model: nn.Module | None = None):
        self.cfg = cfg
        tcfg = cfg["trainer"]
        if tcfg["num_threads"] > 0:
            torch.set_num_threads(tcfg["num_threads"])
        # Subnormal floats (e.g. Adam's second moments of a dead ReLU's tiny gradients) are many
        # times slower on x86 CPUs: a high-lr Adam trial's epochs went from 2.1 s to 4.1 s. Flushed
        # to zero, they change nothing a model can tell.
        torch.set_flush_denormal(True)
        torch.manual_seed(cfg["seed"])  # weight init and dropout masks
        self.device = resolve_device(tcfg["device"])
        self.data = data
        self.regression = data.task == REGRESSION
        model = model or build_model(cfg["model"], cfg["regularizer"], data)
        check_output(model, data)
        self.model = model.to(self.device)
        self.loss_fn = build_loss(cfg.get("loss") or {}) or self._task_loss
        self.metrics = build_metrics(cfg.get("metrics"))
        if not data.is_streamed:  # in memory: on the device once, batches are slices of it
            self.xs = {s: getattr(data, f"x_{s}").to(self.device) for s in ("train", "val", "test")}
            self.ys = {s: getattr(data, f"y_{s}").to(self.device) for s in ("train", "val", "test")}

    def batches(self, split: str, batch_size: int, shuffle: torch.Generator | None = None):
        """``(x, y)`` batches of a split on the device, shuffled by ``shuffle`` when given. In-memory
        tensors are indexed (no DataLoader on the hot path); a streamed split is read through a
        DataLoader with ``trainer.loader_workers`` processes."""
        if not self.data.is_streamed:
            x, y = self.xs[split], self.ys[split]
            order = torch.randperm(len(x), generator=shuffle).to(self.device) if shuffle is not None else None
            for start in range(0, len(x), batch_size):
                if order is None:
                    yield x[start : start + batch_size], y[start : start + batch_size]
                else:
                    idx = order[start : start + batch_size]
                    yield x[idx], y[idx]
            return
        from torch.utils.data import DataLoader

        workers = self.cfg["trainer"].get("loader_workers", 0)
        loader = DataLoader(
            getattr(self.data, f"x_{split}"),
            batch_size=batch_size,
            shuffle=shuffle is not None,
            generator=shuffle,
            num_workers=workers,
            persistent_workers=False,
        )
        for xb, yb in loader:
            yb = yb.float().reshape(len(yb), -1) if self.regression else yb.long()
            yield xb.to(self.device), yb.to(self.device)

    def _task_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return nn.functional.mse_loss(out, y)
        if out.shape[1] == 1:  # one sigmoid unit: the course's binary classifier
            return nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype))
        return nn.functional.cross_entropy(out, y)

    def _hits(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        predicted = (out.squeeze(1) > 0).long() if out.shape[1] == 1 else out.argmax(1)
        return (predicted == y).sum()

    @torch.no_grad()
    def evaluate(self, split: str, batches: int | None = None) -> dict[str, float]:
        """``<split>/loss`` and the task's and the user's metrics on ``val`` or ``test``, with the
        model in eval mode (dropout off); on the first ``batches`` batches only when given (a check
        that the metrics are reported, not a measurement)."""
        self.model.eval()
        outs, ys = [], []
        for xb, yb in self.batches(split, self.cfg["trainer"]["eval_batch_size"]):
            outs.append(self.model(xb))
            ys.append(yb)
            if batches is not None and len(outs) >= batches:
                break
        out, y = torch.cat(outs), torch.cat(ys)
        result = {f"{split}/loss": float(self.loss_fn(out, y))}
        if self.regression:
            result[f"{split}/mse"] = float(nn.functional.mse_loss(out, y))
            result[f"{split}/mae"] = float(nn.functional.l1_loss(out, y))
        else:
            result[f"{split}/acc"] = int(self._hits(out, y)) / len(y)
        for name, metric in self.metrics.items():
            result[f"{split}/{name}"] = float(metric(out, y))
        return result


class Trainer(Evaluator):
    """One training run of the model described by a resolved config on one :class:`DataBundle`."""

    def __init__(self, cfg: Mapping[str, Any], data: DataBundle, model: nn.Module | None = None):
        super().__init__(cfg, data, model)
        tcfg = cfg["trainer"]
        self.optimizer = build_optimizer(
            cfg["optimizer"], [p for p in self.model.parameters() if p.requires_grad]
        )
        self.schedule = build_lr_schedule(cfg["lr_schedule"], self.optimizer, tcfg["epochs"])
        self.penalty = build_penalty(cfg["regularizer"], self.model)
        self.stopper = EarlyStopping(**tcfg["early_stopping"])
        self.shuffle = torch.Generator().manual_seed(cfg["seed"])
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    # -- the two halves of an epoch (evaluate is the other)
    def train_epoch(self) -> dict[str, float]:
        """One pass over the training split in shuffled mini-batches.

        Loss and accuracy are running averages over the epoch, as Keras reports them.
        """
        self.model.train()
        n = len(self.data.x_train)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for xb, yb in self.batches("train", self.cfg["trainer"]["batch_size"], self.shuffle):
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            objective = loss + self.penalty() if self.penalty else loss
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * len(yb)
            if not self.regression:
                correct += self._hits(out.detach(), yb)
        metrics = {TRAIN_LOSS: loss_sum.item() / n}
        if not self.regression:
            metrics[TRAIN_ACC] = correct.item() / n
        if self.penalty:
            with torch.no_grad():
                metrics[TRAIN_PENALTY] = self.penalty().item()
        return metrics

    # -- the run
    def fit(
        self, on_epoch: Callable[[dict[str, float]], None] | None = None, evaluate_test: bool = True
    ) -> FitResult:
        """Train until ``trainer.epochs``, early stopping or divergence; then test on the best weights.

        A sweep's trials pass ``evaluate_test=False``: only the chosen model meets the test set.
        """
        epochs = self.cfg["trainer"]["epochs"]
        status, reason = COMPLETED, f"ran all {epochs} epochs"
        first = len(self.history) + 1
        if self.stopper.should_stop:  # restored from a run that had stopped early: it trains no more
            first, status = epochs + 1, EARLY_STOPPED
            reason = f"stopped early before; best epoch {self.stopper.best_epoch}"
        for epoch in range(first, epochs + 1):
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            metrics = self.train_epoch()
            if not math.isfinite(metrics[TRAIN_LOSS]):
                status, reason = (
                    DIVERGED,
                    f"{TRAIN_LOSS} became {metrics[TRAIN_LOSS]} in epoch {epoch} (lr={lr:g})",
                )
                break
            metrics.update(self.evaluate("val"))
            if not math.isfinite(metrics[VAL_LOSS]):
                status, reason = (
                    DIVERGED,
                    f"{VAL_LOSS} became {metrics[VAL_LOSS]} in epoch {epoch} (lr={lr:g})",
                )
                break
            metrics.update({LR: lr, EPOCH_TIME: time.perf_counter() - t0, EPOCH: epoch})
            if self.stopper.update(epoch, metrics[VAL_LOSS]):
                self.best_state = copy.deepcopy(self.model.state_dict())
            if isinstance(self.schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.schedule.step(metrics[VAL_LOSS])
            elif self.schedule is not None:
                self.schedule.step()
            self.history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
            if self.stopper.should_stop:
                status = EARLY_STOPPED
                stop = self.stopper
                reason = (
                    f"{VAL_LOSS} did not improve by {stop.min_delta} for {stop.patience} epochs; "
                    f"best epoch {self.stopper.best_epoch}"
                )
                break

        # Keras's restore_best_weights belongs to early stopping: without it the run ends on its last weights.
        es = self.cfg["trainer"]["early_stopping"]
        if self.best_state is not None and (status == DIVERGED or (es["enabled"] and es["restore_best"])):
            self.model.load_state_dict(self.best_state)
        test: dict[str, float] = {}
        if self.history and evaluate_test:  # a run that diverged in epoch 1 has no weights worth testing
            test = self.evaluate("test")
        best_epoch = self.stopper.best_epoch if self.best_state is not None else None
        return FitResult(status, reason, list(self.history), best_epoch, test)

    # -- resume
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue this run after the last finished epoch."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "stopper": self.stopper.state_dict(),
            "history": self.history,
            "best_state": self.best_state,
            "base_lr": float(self.cfg["optimizer"]["lr"]),  # what the schedule's position is relative to
            "shuffle": self.shuffle.get_state(),
            "torch_rng": torch.get_rng_state(),
            # On a GPU, dropout masks come from the device's own generator, not the CPU's.
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`checkpoint`, whichever device wrote it, under this trainer's settings.

        Progress comes from the checkpoint (weights, optimizer moments, the schedule's position,
        early stopping's record, random states); settings come from this trainer's config. A PBT
        exploit restores another trial's checkpoint under perturbed values, and each must take
        effect: the optimizer's saved state would otherwise bring back the donor's momentum, betas,
        weight decay..., the schedule's its gamma, early stopping's its patience. The weight penalty,
        dropout rates and batch size are built from the config and not in a checkpoint. A learning
        rate the schedule has moved keeps its position: ``lr * new base / old base``. On a retry
        (same config) every setting is the saved one and the run continues bit for bit.

        Load the state onto the CPU (``torch.load(..., map_location="cpu")``): weights and
        optimizer state are copied to this trainer's device here, and random states must be
        CPU byte tensors. A GPU's random state is restored only on a GPU.
        """
        settings = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        base = float(self.cfg["optimizer"]["lr"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group, own in zip(self.optimizer.param_groups, settings, strict=True):
            lr, old_base = group["lr"], state.get("base_lr", group.get("initial_lr", group["lr"]))
            group.update(own)
            group["lr"] = lr if base == old_base else base if lr == old_base else lr * base / old_base
        if self.schedule is not None and state["schedule"] is not None:
            own = {k: v for k, v in self.schedule.state_dict().items() if k not in _SCHEDULE_PROGRESS}
            self.schedule.load_state_dict({**state["schedule"], **own})
            self.schedule._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        own = {k: v for k, v in self.stopper.state_dict().items() if k in _STOPPER_SETTINGS}
        self.stopper.load_state_dict({**state["stopper"], **own})
        self.history = list(state["history"])
        self.best_state = state["best_state"]
        self.shuffle.set_state(state["shuffle"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
