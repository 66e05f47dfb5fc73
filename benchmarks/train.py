"""Training throughput of the default taxi model (examples/s), on whatever device TensorFlow sees.

Runs in one process, on the real taxi training split (ingested from the cached CSV):

* **kfloop**: the trainer's input pipeline (``tf.data``: seeded shuffle, batch, prefetch) into
  ``Model.fit`` with the default hyperparameters and the trainer's distribution strategy.
* **baseline**: the same model and batch size fed from in-memory numpy arrays (Keras' own array adapter,
  ``shuffle=True``), the usual first version of a Keras training script.

Each variant trains ``--epochs`` epochs after one warm-up epoch (tracing); the script prints examples/s
per variant, the kfloop/baseline ratio, and the end-to-end ``train()`` time (fit + export) of the
default model. The script is unchanged on a GPU machine: it prints the device and strategy it used.

Usage (pipeline env)::

    .venv/bin/python benchmarks/train.py [--epochs 3] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed_fit(model, data, epochs: int, rows: int, **fit_kwargs) -> float:
    """Examples/s over ``epochs`` epochs (after a warm-up epoch that traces the step function)."""
    model.fit(data, epochs=1, verbose=0, **fit_kwargs)
    start = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=0, **fit_kwargs)
    return rows * epochs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (default 3)")
    p.add_argument("--batch-size", type=int, default=None, help="default: HParams().batch_size")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from examples.taxi import fetch as data
    from kfloop import contract
    from kfloop import spec as kspec
    from kfloop.ingest import ingest
    from training_image import trainer
    from training_image.trainer import distribute, model

    spec = kspec.load(ROOT / "examples" / "taxi" / "spec.yaml")

    hp = trainer.HParams() if args.batch_size is None else trainer.HParams(batch_size=args.batch_size)
    work = Path(tempfile.mkdtemp(prefix="kfloop-bench-train-"))
    paths = {k: str(work / f"{k}.csv") for k in ("train", "eval", "live")}
    # the taxi example's time split (make run's --cutoff)
    ingest(str(data.fetch()), spec, "2015-01-01", paths["train"], paths["eval"], paths["live"])
    train_df = trainer.read_split(paths["train"], spec, "train")
    rows = len(train_df)

    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU x{len(gpus)} ({gpus[0].name})" if gpus else "CPU"
    strategy = distribute.choose_strategy()
    print(
        f"device: {device}; strategy: {type(strategy).__name__}; TF {tf.__version__}, Keras {keras.__version__}"
    )
    print(f"data: {rows} training rows, batch {hp.batch_size}, {args.epochs} timed epochs per variant")

    stats = trainer.feature_stats(train_df, spec, hp)

    def fresh_model():
        keras.utils.set_random_seed(hp.seed)
        with strategy.scope():
            m = model.build_model(spec, stats, hp)
            m.compile(keras.optimizers.Adam(hp.learning_rate), "binary_crossentropy", metrics=["auc"])
        return m

    ds = trainer.make_dataset(train_df, spec, hp, training=True)
    kfloop_eps = _timed_fit(fresh_model(), ds, args.epochs, rows)

    x = contract.encode_inputs(train_df, spec)
    y = train_df[spec.label.name].astype("int64").to_numpy(dtype="float32")
    baseline_eps = _timed_fit(
        fresh_model(), x, args.epochs, rows, y=y, batch_size=hp.batch_size, shuffle=True
    )

    print(f"{'variant':<10} {'examples/s':>12}")
    print(f"{'kfloop':<10} {kfloop_eps:>12,.0f}")
    print(f"{'baseline':<10} {baseline_eps:>12,.0f}")
    print(f"ratio kfloop/baseline: {kfloop_eps / baseline_eps:.2f}x")

    start = time.perf_counter()
    result = trainer.train(paths["train"], paths["eval"], str(work / "model"), hp, spec=spec)
    total = time.perf_counter() - start
    print(
        f"end-to-end train() with defaults: {total:.1f} s ({result.train_seconds:.1f} s fit, "
        f"{result.metrics['epochs_run']} epochs, {result.examples_per_second:,.0f} examples/s incl. eval), "
        f"eval AUC {result.metrics['auc']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
