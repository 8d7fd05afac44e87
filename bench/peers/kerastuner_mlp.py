"""KerasTuner's way to tune sweeplab's Fashion-MNIST MLP: Hyperband, Keras 3 on its torch backend.

What a KerasTuner user writes: a ``HyperModel`` whose ``build`` makes the Keras model of the
sampled config (Dense layers, BatchNormalization / Dropout / L1-L2 kernel regularizers,
Glorot-uniform init, the optimizer with its learning rate) and whose ``fit`` picks the batch
size and the learning-rate schedule; then ``Hyperband(max_epochs=...)`` searches, in one
process (KerasTuner's ordinary mode) with torch using both cores. Trials are capped by the
oracle's ``max_trials`` and by the wall-clock budget (no new trial after it; a running one
stops at the end of its epoch). At the end ``get_best_models()[0]`` (the best trial's best
epoch, as KerasTuner checkpointed it) meets the test set once.

Keras's ``val_loss`` includes the L1/L2 penalty (sweeplab logs the data loss alone); the
comparison reads validation accuracy, which the penalty does not touch.

    KERAS_BACKEND=torch python kerastuner_mlp.py --task task.json --log kt.jsonl --workdir DIR --seed 0
"""

from __future__ import annotations

import math
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import torch  # noqa: E402
from task import Clock, Log, arguments, decode, encode, fixed, load_split, load_task, settings  # noqa: E402


# ------------------------------------------------------------------- the model
class MLPHyperModel(keras_tuner.HyperModel):
    def __init__(self, task: dict):
        super().__init__(name="fashion_mlp")
        self.task = task

    def value(self, hp: keras_tuner.HyperParameters, key: str):
        spec = self.task["space"].get(key)
        if spec is None:
            return fixed(self.task, key)
        kind, args = spec["kind"], spec["args"]
        if kind in ("choice", "grid"):
            return decode(key, hp.Choice(key, [encode(a) for a in args]))
        if kind in ("uniform", "loguniform"):
            return hp.Float(key, args[0], args[1], sampling="log" if kind == "loguniform" else "linear")
        return hp.Int(key, args[0], args[1], step=args[2] if kind == "qrandint" else 1)

    def config(self, hp: keras_tuner.HyperParameters) -> dict:
        cfg = {key: self.value(hp, key) for key in ("hidden", "activation", "batch_size")}
        for group in ("optimizer", "regularizer", "lr_schedule"):
            cfg[group] = dict(settings(self.task, group, self.value(hp, group)))
        if "lr" in self.task["space"]:
            cfg["optimizer"]["lr"] = self.value(hp, "lr")
        return cfg

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        cfg = self.config(hp)
        reg = cfg["regularizer"]
        penalty = keras.regularizers.L1L2(l1=reg["l1"], l2=reg["l2"]) if reg["l1"] or reg["l2"] else None
        init = (
            "glorot_uniform"
            if self.task["init"] == "glorot_uniform"
            else keras.initializers.VarianceScaling(
                1 / 3,
                "fan_in",
                "uniform",  # torch's default Kaiming-uniform(a=sqrt(5))
            )
        )
        inputs = keras.Input((784,))
        x = inputs
        for width in cfg["hidden"]:
            x = keras.layers.Dense(width, kernel_initializer=init, kernel_regularizer=penalty)(x)
            if reg["batch_norm"]:
                x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation(cfg["activation"])(x)
            if reg["dropout"] > 0:
                x = keras.layers.Dropout(reg["dropout"])(x)
        outputs = keras.layers.Dense(
            10, activation="softmax", kernel_initializer=init, kernel_regularizer=penalty
        )(x)
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=optimizer(cfg["optimizer"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(self, hp, model, *args, **kwargs):
        cfg = self.config(hp)
        callbacks = list(kwargs.pop("callbacks", []))
        schedule = cfg["lr_schedule"]
        if schedule["name"] == "cosine":  # per epoch, as torch's CosineAnnealingLR over the full epochs
            lr0, low, epochs = cfg["optimizer"]["lr"], schedule["min_lr"], self.task["epochs"]
            callbacks.append(
                keras.callbacks.LearningRateScheduler(
                    lambda epoch, _lr: low + (lr0 - low) * (1 + math.cos(math.pi * epoch / epochs)) / 2
                )
            )
        elif schedule["name"] != "constant":
            raise SystemExit(f"error: the KerasTuner peer has no lr_schedule {schedule['name']!r}")
        return model.fit(*args, batch_size=cfg["batch_size"], callbacks=callbacks, **kwargs)


def optimizer(opt: dict) -> keras.optimizers.Optimizer:
    name, lr = opt["name"], float(opt["lr"])
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=opt["momentum"], nesterov=opt["nesterov"])
    if name == "rmsprop":
        return keras.optimizers.RMSprop(
            lr, rho=opt["alpha"], epsilon=opt["eps"], momentum=opt["momentum"], centered=opt["centered"]
        )
    if name in ("adam", "adamw"):
        beta_1, beta_2 = opt["betas"]
        common = dict(beta_1=beta_1, beta_2=beta_2, epsilon=opt["eps"], amsgrad=opt["amsgrad"])
        if name == "adamw":
            return keras.optimizers.AdamW(lr, weight_decay=opt["weight_decay"], **common)
        return keras.optimizers.Adam(lr, **common)
    if name == "adagrad":
        return keras.optimizers.Adagrad(
            lr, initial_accumulator_value=opt["initial_accumulator_value"], epsilon=opt["eps"]
        )
    raise SystemExit(f"error: the KerasTuner peer has no optimizer {name!r}; add it to kerastuner_mlp.py")


# ------------------------------------------------------- budget and epoch log
class EpochLog(keras.callbacks.Callback):
    """One JSON line per epoch; stops the trial at the end of the epoch that spends the budget."""

    def __init__(self, log: Log, clock: Clock, trial_id: str):
        super().__init__()
        self.log, self.clock, self.trial_id = log, clock, trial_id

    def on_epoch_end(self, epoch, logs=None):
        self.log.epoch(self.trial_id, epoch + 1, logs["val_accuracy"], logs["val_loss"])
        if self.clock.out_of_time():
            self.model.stop_training = True


class BudgetedOracle(keras_tuner.oracles.HyperbandOracle):
    """Hyperband that starts no trial once the wall-clock budget is spent."""

    def __init__(self, clock: Clock, **kwargs):
        super().__init__(**kwargs)
        self.clock = clock

    def populate_space(self, trial_id):
        if self.clock.out_of_time():
            return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED}
        return super().populate_space(trial_id)


class BudgetedHyperband(keras_tuner.Hyperband):
    """KerasTuner's Hyperband tuner (its run_trial and checkpoint reloading) over the budgeted oracle."""

    def __init__(self, hypermodel, oracle: BudgetedOracle, log: Log, **kwargs):
        keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.epoch_log = log

    def run_trial(self, trial, *args, **kwargs):
        callbacks = [
            *kwargs.pop("callbacks", []),
            EpochLog(self.epoch_log, self.oracle.clock, trial.trial_id),
        ]
        return super().run_trial(trial, *args, callbacks=callbacks, **kwargs)


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both cores by default)")
    args = parser.parse_args()
    task = load_task(args.task)
    torch.set_num_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    clock = Clock(args.t0, task["budget_s"])
    log = Log(args.log, clock)
    data = load_split(task["split"])
    oracle = BudgetedOracle(
        clock,
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_epochs=task["epochs"],
        factor=3,
        hyperband_iterations=task["max_trials"],  # more than enough: max_trials and the budget end it
        seed=args.seed,
    )
    oracle.max_trials = task["max_trials"]
    tuner = BudgetedHyperband(
        MLPHyperModel(task),
        oracle,
        log,
        directory=str(args.workdir),
        project_name=f"fashion_mlp-seed{args.seed}",
        overwrite=True,
    )
    clock.start_search()
    tuner.search(data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]), verbose=0)
    best_trial = tuner.oracle.get_best_trials(1)
    if not best_trial:
        print("error: no KerasTuner trial finished within the budget", file=sys.stderr)
        return 1
    model = tuner.get_best_models(1)[0]
    result = model.evaluate(
        data["x_test"], data["y_test"], batch_size=task["eval_batch_size"], verbose=0, return_dict=True
    )
    statuses = [t.status for t in tuner.oracle.trials.values()]
    log.final(
        best_trial[0].trial_id,
        result["accuracy"],
        result["loss"],
        best_val_acc=best_trial[0].score,
        params={k: v for k, v in best_trial[0].hyperparameters.values.items() if not k.startswith("tuner/")},
        trials={s: statuses.count(s) for s in sorted(set(statuses))},
        versions={
            "keras": keras.__version__,
            "keras_tuner": keras_tuner.__version__,
            "torch": torch.__version__,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
