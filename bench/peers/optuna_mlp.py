"""Optuna's way to tune sweeplab's Fashion-MNIST MLP: TPE + a pruner, two workers, one storage.

What an Optuna user writes: a plain PyTorch loop (the model family of sweeplab's ``mlp``:
dense layers, activation, dropout / batch norm / L1-L2 penalties, Glorot-uniform init), an
objective that reports validation accuracy every epoch and lets the pruner stop it, and
``study.optimize`` in two worker processes (one torch thread each, one per core) over a
journal-file storage. Each trial keeps its best epoch's weights; the best trial's are saved,
and at the end the study's best trial's model, as trained, meets the test set once.

    python optuna_mlp.py --task task.json --log optuna.jsonl --workdir DIR --seed 0 [--pruner median]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts its thread pool

import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.storages import JournalStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402
from task import Clock, Log, arguments, decode, encode, fixed, load_split, load_task, settings  # noqa: E402
from torch import nn  # noqa: E402

WORKERS = 2
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


# ------------------------------------------------------------ the trial's config
def suggest(trial: optuna.Trial, task: dict, key: str):
    spec = task["space"].get(key)
    if spec is None:
        return fixed(task, key)
    kind, args = spec["kind"], spec["args"]
    if kind in ("choice", "grid"):
        return decode(key, trial.suggest_categorical(key, [encode(a) for a in args]))
    if kind in ("uniform", "loguniform"):
        return trial.suggest_float(key, args[0], args[1], log=kind == "loguniform")
    step = args[2] if kind == "qrandint" else 1
    return trial.suggest_int(key, args[0], args[1], step=step)


def trial_config(trial: optuna.Trial, task: dict) -> dict:
    cfg = {key: suggest(trial, task, key) for key in ("hidden", "activation", "batch_size")}
    for group in ("optimizer", "regularizer", "lr_schedule"):
        cfg[group] = dict(settings(task, group, suggest(trial, task, group)))
    if "lr" in task["space"]:
        cfg["optimizer"]["lr"] = suggest(trial, task, "lr")
    return cfg


# ------------------------------------------------------------ model and training
def build_model(cfg: dict, init: str) -> nn.Sequential:
    reg, layers, n_in = cfg["regularizer"], [], 784
    for width in cfg["hidden"]:
        layers.append(nn.Linear(n_in, width))
        if reg["batch_norm"]:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[cfg["activation"]]())
        if reg["dropout"] > 0:
            layers.append(nn.Dropout(reg["dropout"]))
        n_in = width
    layers.append(nn.Linear(n_in, 10))
    model = nn.Sequential(*layers)
    if init == "glorot_uniform":  # Keras's default, as sweeplab's networks
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    return model


def build_optimizer(opt: dict, params) -> torch.optim.Optimizer:
    name, lr = opt["name"], float(opt["lr"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt["momentum"], nesterov=opt["nesterov"])
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=lr,
            alpha=opt["alpha"],
            eps=opt["eps"],
            momentum=opt["momentum"],
            centered=opt["centered"],
        )
    if name == "adam":
        return torch.optim.Adam(
            params, lr=lr, betas=tuple(opt["betas"]), eps=opt["eps"], amsgrad=opt["amsgrad"]
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params,
            lr=lr,
            betas=tuple(opt["betas"]),
            eps=opt["eps"],
            weight_decay=opt["weight_decay"],
            amsgrad=opt["amsgrad"],
        )
    if name == "adagrad":
        return torch.optim.Adagrad(
            params, lr=lr, initial_accumulator_value=opt["initial_accumulator_value"], eps=opt["eps"]
        )
    raise SystemExit(f"error: the Optuna peer has no optimizer {name!r}; add it to bench/peers/optuna_mlp.py")


def build_schedule(sched: dict, optimizer, epochs: int):
    if sched["name"] == "constant":
        return None
    if sched["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=sched["min_lr"])
    raise SystemExit(f"error: the Optuna peer has no lr_schedule {sched['name']!r}; add it to optuna_mlp.py")


def penalty(model: nn.Module, reg: dict):
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    if not (reg["l1"] or reg["l2"]):
        return None
    return lambda: sum(reg["l1"] * w.abs().sum() + reg["l2"] * w.pow(2).sum() for w in weights)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch])
        loss += nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum").item()
        correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    return loss / len(x), correct / len(x)


# ------------------------------------------------------------------- objective
def make_objective(task: dict, data: dict, log: Log, clock: Clock, models: Path):
    epochs, eval_batch = task["epochs"], task["eval_batch_size"]
    x, y = data["x_train"], data["y_train"]

    def objective(trial: optuna.Trial) -> float:
        if trial.number >= task["max_trials"]:  # the other worker took the last one meanwhile
            trial.study.stop()
            raise optuna.TrialPruned("trial cap reached")
        cfg = trial_config(trial, task)
        torch.manual_seed(trial.number)
        model = build_model(cfg, task["init"])
        opt = build_optimizer(cfg["optimizer"], model.parameters())
        schedule = build_schedule(cfg["lr_schedule"], opt, epochs)
        pen = penalty(model, cfg["regularizer"])
        shuffle = torch.Generator().manual_seed(trial.number)
        best_acc, best_state, bs = -1.0, None, cfg["batch_size"]
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(len(x), generator=shuffle)
            for i in range(0, len(x), bs):
                idx = perm[i : i + bs]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                if pen is not None:
                    loss = loss + pen()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            val_loss, val_acc = evaluate(model, data["x_val"], data["y_val"], eval_batch)
            if not math.isfinite(val_loss):
                return float("nan")  # Optuna records the trial as failed: diverged
            log.epoch(trial.number, epoch, val_acc, val_loss)
            if val_acc > best_acc:
                best_acc, best_state = val_acc, copy.deepcopy(model.state_dict())
            if schedule is not None:
                schedule.step()
            trial.report(val_acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
            if clock.out_of_time():
                break  # the budget is spent: the trial ends with what it has, as Tune's time budget does
        try:
            beats = best_acc > trial.study.best_value
        except ValueError:  # no completed trial yet
            beats = True
        if beats:  # only a model that may be chosen is kept
            torch.save({"config": cfg, "state": best_state}, models / f"{trial.number}.pt")
        return best_acc

    return objective


def pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)


def storage(workdir: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(workdir / "journal.log")))


def study_name(seed: int) -> str:
    return f"fashion_mlp-seed{seed}"


def worker(args, task: dict) -> None:
    torch.set_num_threads(1)
    clock = Clock(args.t0, None)
    clock.deadline = args.deadline
    data = {k: torch.from_numpy(v) for k, v in load_split(Path(task["split"])).items()}
    study = optuna.load_study(
        study_name=study_name(args.seed),
        storage=storage(args.workdir),
        sampler=optuna.samplers.TPESampler(seed=args.seed * WORKERS + args.worker),
        pruner=pruner(args.pruner, task["epochs"]),
    )
    models = args.workdir / "models"
    models.mkdir(exist_ok=True)
    timeout = max(args.deadline - time.time(), 0.0) if math.isfinite(args.deadline) else None
    study.optimize(
        make_objective(task, data, Log(args.log, clock), clock, models),
        timeout=timeout,
        callbacks=[optuna.study.MaxTrialsCallback(task["max_trials"], states=None)],
    )


def launcher(args, task: dict) -> int:
    clock = Clock(args.t0, task["budget_s"])
    args.workdir.mkdir(parents=True, exist_ok=True)
    optuna.create_study(study_name=study_name(args.seed), storage=storage(args.workdir), direction="maximize")
    deadline = clock.start_search()
    common = [
        f"--task={args.task}",
        f"--log={args.log}",
        f"--workdir={args.workdir}",
        f"--seed={args.seed}",
        f"--t0={clock.t0}",
        f"--pruner={args.pruner}",
        f"--deadline={deadline}",
    ]
    procs = [subprocess.Popen([sys.executable, __file__, *common, f"--worker={i}"]) for i in range(WORKERS)]
    codes = [p.wait() for p in procs]
    if any(codes):
        print(f"error: an Optuna worker exited with {codes}", file=sys.stderr)
        return 1
    study = optuna.load_study(study_name=study_name(args.seed), storage=storage(args.workdir))
    states = [t.state.name for t in study.trials]
    counts = {s: states.count(s) for s in sorted(set(states))}
    if not counts.get("COMPLETE"):
        print(f"error: no Optuna trial completed within the budget ({counts})", file=sys.stderr)
        return 1
    best = study.best_trial
    saved = torch.load(args.workdir / "models" / f"{best.number}.pt")
    model = build_model(saved["config"], task["init"])
    model.load_state_dict(saved["state"])
    data = load_split(Path(task["split"]))
    test_loss, test_acc = evaluate(
        model, torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"]), task["eval_batch_size"]
    )
    Log(args.log, clock).final(
        best.number,
        test_acc,
        test_loss,
        best_val_acc=best.value,
        params=best.params,
        trials=counts,
        versions={"optuna": optuna.__version__, "torch": torch.__version__},
    )
    for other in (args.workdir / "models").glob("*.pt"):  # the chosen model is all that is kept
        if other.stem != str(best.number):
            other.unlink()
    return 0


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--pruner", choices=("hyperband", "median"), default="hyperband")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=math.inf, help=argparse.SUPPRESS)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = load_task(args.task)
    if args.worker is not None:
        worker(args, task)
        return 0
    return launcher(args, task)


if __name__ == "__main__":
    sys.exit(main())
