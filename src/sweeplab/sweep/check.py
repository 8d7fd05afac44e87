"""Can the sweep's trials train? Answered on the driver before any trial starts.

``sweeplab sweep`` checks every data x model choice of the space (quick: a broken model is one line,
not a failed trial retried in vain); ``sweeplab sweep --check`` checks every group choice of the
space and every discrete value of the model's keys, then exits without training. Each distinct
model is built once on its data's shape, runs one batch forward and is measured on the validation
split once (so ``tune.metric`` is known to be reported); optimizer, schedule, penalty, loss and
metrics are built around it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from sweeplab.config import ConfigError
from sweeplab.errors import one_line
from sweeplab.metrics import EPOCH_TIME, LR, TRAIN_ACC, TRAIN_LOSS, TRAIN_PENALTY
from sweeplab.space import Param, to_override

QUICK_GROUPS = ("data", "model")  # what decides whether a model can be built at all
MODEL_GROUPS = ("data", "model", "regularizer")  # what a model is built from (dropout, batch norm)
INTEGER_KINDS = ("randint", "qrandint")
TRAIN_METRICS = (TRAIN_LOSS, TRAIN_ACC, TRAIN_PENALTY, LR, EPOCH_TIME)


@dataclass
class CheckReport:
    compositions: int = 0
    models: dict[str, tuple[str, int]] = field(default_factory=dict)  # model key -> (option, params)
    reported: set[str] = field(default_factory=set)  # metric keys the trials report

    def lines(self) -> list[str]:
        """One line per model option: how many distinct models it made and their sizes."""
        sizes: dict[str, list[int]] = {}
        for option, n in self.models.values():
            sizes.setdefault(option, []).append(n)
        return [
            f"model {option}: {len(ns)} distinct, {min(ns):,}"
            + (f" to {max(ns):,}" if max(ns) > min(ns) else "")
            + " parameters"
            for option, ns in sizes.items()
        ]


def check_trials(
    cfg: Mapping[str, Any], base_overrides: Sequence[str], params: Sequence[Param], thorough: bool = False
) -> CheckReport:
    """Raise :class:`ConfigError` with the line ``sweeplab train`` would print (and the choice that
    led to it) if some trial could not train; else what was checked."""
    from sweeplab.trial import trial_config

    report = CheckReport()
    for sampled in _choices(params, thorough):
        try:
            _check_one(trial_config(base_overrides, sampled), report)
        except (ConfigError, ValueError, RuntimeError) as exc:  # DataError is a ValueError
            where = f" (with {' '.join(to_override(k, v) for k, v in sampled.items())})" if sampled else ""
            raise ConfigError(f"{one_line(exc, limit=1000)}{where}") from None
    metric = cfg["tune"]["metric"]
    if metric not in report.reported and not metric.startswith("hp/"):
        raise ConfigError(
            f"tune.metric={metric} is reported by no trial; they report: {', '.join(sorted(report.reported))}"
        )
    return report


def _choices(params: Sequence[Param], thorough: bool) -> list[dict[str, Any]]:
    """Quick: the product of the data and model choices. Thorough: that with the regularizer's and
    every discrete value of a model key, then each option of every other group on its own."""
    product_keys = MODEL_GROUPS if thorough else QUICK_GROUPS
    crossed = [p for p in params if p.key in product_keys or (thorough and p.key.startswith("model."))]
    crossed = [p for p in crossed if p.discrete or p.is_group or (thorough and p.kind in INTEGER_KINDS)]
    base = [
        {p.key: v for p, v in zip(crossed, values, strict=True)}
        for values in product(*[_values(p) for p in crossed])
    ]
    if not thorough:
        return base
    alone = [{p.key: v} for p in params if p.is_group and p not in crossed for v in p.args]
    return base + [{**base[0], **one} for one in alone]


def _values(p: Param) -> tuple:
    """A discrete key's every value; an integer range's two ends (a layer at its narrowest and its
    widest: where a model fails to build or to fit, it fails there)."""
    if p.kind not in INTEGER_KINDS:
        return p.args
    low, high = p.args[0], p.args[1]
    # Tune's randint leaves its upper end out; qrandint keeps it, on a multiple of q
    high = (high // p.args[2]) * p.args[2] if p.kind == "qrandint" else high - 1
    return tuple(dict.fromkeys((low, high)))


def _check_one(cfg: dict[str, Any], report: CheckReport) -> None:
    from sweeplab.build import build_lr_schedule, build_model, build_optimizer, build_penalty
    from sweeplab.summary import count_parameters
    from sweeplab.training import Evaluator
    from sweeplab.trial import cached_data

    report.compositions += 1
    data = cached_data(cfg["data"])
    key = json.dumps([cfg[k] for k in ("data", "model", "regularizer", "loss", "metrics")], sort_keys=True)
    if key not in report.models:
        evaluator = Evaluator(cfg, data)  # builds the model, checks its output, loss and metrics
        report.reported |= set(evaluator.evaluate("val", batches=1)) | set(TRAIN_METRICS)
        report.models[key] = (cfg["model"]["name"], count_parameters(evaluator.model)[0])
        model = evaluator.model
    else:
        model = build_model(cfg["model"], cfg["regularizer"], data)
    optimizer = build_optimizer(cfg["optimizer"], [p for p in model.parameters() if p.requires_grad])
    build_lr_schedule(cfg["lr_schedule"], optimizer, cfg["trainer"]["epochs"])
    build_penalty(cfg["regularizer"], model)
