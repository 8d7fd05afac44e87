"""One build path: every option of data, model, optimizer, lr_schedule, regularizer, loss and
metrics is built by Hydra's ``instantiate`` from its ``_target_``, sweeplab's own options and a
user's alike.

What each kind of target is given besides its config's keys (by name, where its signature asks):

    data         nothing                                  -> a DataBundle
    model        input_shape, num_outputs, num_classes,   -> an nn.Module
                 kind, task, vocab, num_embeddings,
                 and the regularizer's dropout, batch_norm
    optimizer    the parameters (first argument)          -> a torch.optim.Optimizer
    lr_schedule  the optimizer (first), epochs            -> a scheduler, or None for a constant rate
    regularizer  model                                    -> a penalty: () -> tensor added to the loss
    loss         (a class is built; a function is used)   -> (outputs, targets) -> tensor
    metrics      (a class is built; a function is used)   -> (outputs, targets) -> float, as val/<name>

Every key is checked against the target's signature first (:mod:`sweeplab.targets`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from sweeplab.data.bundle import DataBundle
from sweeplab.targets import TargetError, accepted, arguments, check_arguments, qualified

MODEL_INPUTS = ("input_shape", "num_outputs", "num_classes", "kind", "task", "vocab", "num_embeddings")
LAYER_REGULARIZERS = ("dropout", "batch_norm")  # the regularizer's keys a model takes, not its penalty
Metric = Callable[[torch.Tensor, torch.Tensor], Any]


def _factory(group: str, node: Mapping[str, Any], injected: Iterable[str] = (), skip: Iterable[str] = ()):
    """The option's target, checked, and a partial of it holding the config's arguments (what
    sweeplab passes itself is added when it calls it: tensors and modules never go through
    OmegaConf). Nested ``_target_`` arguments are instantiated too."""
    fn = check_arguments(group, node, tuple(injected), tuple(skip))
    spec = {"_target_": node["_target_"], "_partial_": True, "_convert_": "all", **arguments(node, skip)}
    return fn, instantiate(spec)


def _returned(group: str, node: Mapping[str, Any], fn: Callable, obj: Any, want: str) -> TargetError:
    name = node.get("name") or group
    return TargetError(f"{group}={name}: {qualified(fn)} returned {type(obj).__name__}, not {want}")


def build_data(cfg: Mapping[str, Any]) -> DataBundle:
    fn, make = _factory("data", cfg)
    data = make()
    if not isinstance(data, DataBundle):
        raise TargetError(
            f"{_returned('data', cfg, fn, data, 'a DataBundle')}; return "
            "sweeplab.data.DataBundle.of(train=(x, y), val=(x, y), test=(x, y))"
        )
    return data


def build_model(
    model_cfg: Mapping[str, Any], regularizer_cfg: Mapping[str, Any], data: DataBundle
) -> nn.Module:
    fn, make = _factory("model", model_cfg, injected=(*MODEL_INPUTS, *LAYER_REGULARIZERS))
    names, any_kw = accepted(fn)
    offered = {
        **data.metadata(),
        "dropout": float(regularizer_cfg.get("dropout", 0.0)),
        "batch_norm": bool(regularizer_cfg.get("batch_norm", False)),
    }
    for key in LAYER_REGULARIZERS:
        if offered[key] and key not in names and not any_kw:
            raise TargetError(
                f"regularizer.{key}={offered[key]} but model {qualified(fn)} takes no '{key}' argument; "
                f"add a {key} argument to it or choose another regularizer"
            )
    model = make(**{k: v for k, v in offered.items() if any_kw or k in names})
    if not isinstance(model, nn.Module):
        raise _returned("model", model_cfg, fn, model, "a torch.nn.Module")
    return model


def check_output(model: nn.Module, data: DataBundle, group_name: str = "model") -> None:
    """One small batch forward, in eval mode (no statistics or random state change): the model's
    output must fit the data's targets, or training would fail (or silently broadcast) later."""
    with torch.no_grad():
        was_training = model.training
        model.eval()
        try:
            out = model(data.inputs("val", 2))
        finally:
            model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise TargetError(f"{group_name}: forward returned {type(out).__name__}, not a tensor")
    fits = [data.num_outputs]
    if data.task == "classification" and data.num_classes == 2:
        fits.append(2)  # two logits under softmax serve a binary problem as well as one sigmoid unit
    width = out.shape[1] if out.ndim == 2 else None
    if out.ndim != 2 or out.shape[0] != min(2, len(data.x_val)) or width not in fits:
        need = " or ".join(str(f) for f in fits)
        what = (
            f"{data.num_outputs} regression target(s)"
            if data.task == "regression"
            else (f"{data.num_classes} classes")
        )
        raise TargetError(
            f"{group_name} outputs shape {tuple(out.shape[1:])} per sample but the data has {what}: it needs "
            f"({need},); size its last layer from the num_outputs argument"
        )


def build_optimizer(cfg: Mapping[str, Any], params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    fn, make = _factory("optimizer", cfg, injected=("params",))
    optimizer = make(params)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise _returned("optimizer", cfg, fn, optimizer, "a torch.optim.Optimizer")
    return optimizer


def build_lr_schedule(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, epochs: int):
    """A per-epoch schedule (``ReduceLROnPlateau`` is stepped with val/loss), or None."""
    fn, make = _factory("lr_schedule", cfg, injected=("optimizer", "epochs"))
    names, _ = accepted(fn)
    schedule = make(optimizer, **({"epochs": epochs} if "epochs" in names else {}))
    if schedule is not None and not hasattr(schedule, "step"):
        raise _returned("lr_schedule", cfg, fn, schedule, "a learning-rate scheduler (or None)")
    return schedule


def build_penalty(cfg: Mapping[str, Any], model: nn.Module) -> Callable[[], torch.Tensor] | None:
    """The regularizer's penalty on ``model``; falsy when there is nothing to add."""
    fn, make = _factory("regularizer", cfg, injected=("model",), skip=LAYER_REGULARIZERS)
    penalty = make(model=model)
    if penalty is not None and not callable(penalty):
        raise _returned("regularizer", cfg, fn, penalty, "a penalty callable (or None)")
    return penalty or None


def _function(group: str, node: Mapping[str, Any]) -> Callable:
    """A loss or metric: a class is built with the config's keys; a function gets them bound."""
    fn, make = _factory(group, node)
    obj = make() if inspect.isclass(fn) else make
    if not callable(obj):
        raise _returned(group, node, fn, obj, "a callable of (outputs, targets)")
    return obj


def build_loss(cfg: Mapping[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The configured loss; None for ``loss=auto``: the task's own (:mod:`sweeplab.training`)."""
    return _function("loss", cfg) if cfg.get("_target_") else None


def build_metrics(cfg: Mapping[str, Any] | None) -> dict[str, Metric]:
    """``metrics: {name: {_target_: ...}}``: each reported per epoch as ``val/<name>``."""
    out = {}
    for name, node in (cfg or {}).items():
        if "/" in name or not isinstance(node, Mapping) or not node.get("_target_"):
            raise TargetError(
                f"metrics.{name} must be a name without '/' mapping to {{_target_: module.function}}, "
                f"got {node!r}"
            )
        out[name] = _function(f"metrics.{name}", node)
    return out


def describe_targets(cfg: Mapping[str, Any]) -> dict[str, str]:
    """``<group>.target: module:name`` for every option built from a target: what params record."""
    from sweeplab.targets import locate

    out = {}
    for group in ("data", "model", "optimizer", "lr_schedule", "regularizer", "loss"):
        node = cfg.get(group) or {}
        if node.get("_target_"):
            out[f"{group}.target"] = qualified(locate(group, node["_target_"]))
    for name, node in (cfg.get("metrics") or {}).items():
        out[f"metrics.{name}.target"] = qualified(locate(f"metrics.{name}", node["_target_"]))
    return out
