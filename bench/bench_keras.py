"""raygym against Segmentation Gym's Keras, side by side on this CPU: train and predict img/s.

The same network on both sides: Gym's ``custom_unet`` (filters 8, kernel 7, dropout 0.1, 3
bands, 4 classes; 4,004,468 trainable parameters, checked), written here in Keras from
``../shared/GYM_REFERENCE.md`` (this file's own code, not Gym's and not a raygym dependency),
and raygym's ``gym_unet``. Batch 8, 256 x 256, random standardized images, Dice loss, Adam.

Keras runs in a separate venv with ``tensorflow-cpu==2.12.1`` (Gym's pin), created by
``--create`` (pip, ~230 MB) or given by ``--venv``; it is a persistent child process (fp32,
graph mode: ``model.fit`` / ``predict_on_batch``) that waits while raygym runs. Each round
times Keras train, raygym train (each precision asked), Keras predict, raygym predict, one
after the other; ``--rounds`` rounds, median and spread printed, with the load average.
``--stock`` adds raygym with PyTorch's own ops in place of ``raygym.models.fused`` (A/B);
``--keep-freed-memory`` applies :func:`raygym.allocator.keep_freed_memory` to raygym's process.
Keras's training is timed from its first batch's start to its last batch's end (a callback):
``model.fit`` sometimes idles 1-5 s after its last batch with no CPU spent, a per-call cost
that a real Gym run pays once per epoch; the bench prints how often it happened.
Besides wall-clock img/s, each side's process CPU seconds per batch are printed: on a machine
shared with other work, ``--threads 1`` and the CPU column compare the two frameworks' work
with little noise (TF's inter-op pool is pinned to ``--threads`` too).
Never part of CI (it needs TensorFlow).

    python bench/bench_keras.py --create --rounds 3 --steps 4
    python bench/bench_keras.py --threads 1 --stock --precision fp32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCH, SIZE, BANDS, CLASSES, FILTERS, KERNEL, DROPOUT = 8, 256, 3, 4, 8, 7, 0.1
TF_PIN = "tensorflow-cpu==2.12.1"
DEFAULT_VENV = Path(os.environ.get("RAYGYM_KERAS_VENV", "/tmp/raygym-keras-venv"))
GYM_TRAINABLE = 4_004_468  # GYM_REFERENCE.md, UNet f8 k7, 3 bands, 4 classes


# ------------------------------------------------------------------ the Keras side (TF venv)
def keras_unet():  # noqa: ANN201 - runs where only TensorFlow is installed
    """Gym's ``custom_unet`` in Keras: pre-activation conv_blocks, strided downsampling,
    nearest upsampling, ``[up, skip]`` concatenation, 1x1 softmax head."""
    from tensorflow.keras import layers, models

    def conv_block(x, f, k, s, p):  # noqa: ANN001, ANN202
        if p > 0:
            x = layers.Dropout(p)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        return layers.Conv2D(f, k, strides=s, padding="same")(x)

    def bottleneck(x, f):  # noqa: ANN001, ANN202
        y = layers.Conv2D(f, 2, padding="same")(x)
        y = conv_block(y, f, 2, 1, 0.0)
        short = layers.Conv2D(f, 1, padding="same")(x)
        short = layers.Activation("relu")(layers.BatchNormalization()(short))
        return layers.Add()([y, short])

    inp = layers.Input((SIZE, SIZE, BANDS))
    f = FILTERS
    e1 = bottleneck(inp, f)
    e2 = conv_block(e1, 2 * f, KERNEL, 2, DROPOUT)
    e3 = conv_block(e2, 4 * f, KERNEL, 2, DROPOUT)
    e4 = conv_block(e3, 8 * f, KERNEL, 2, DROPOUT)
    e5 = conv_block(e4, 16 * f, KERNEL, 2, DROPOUT)
    b = conv_block(conv_block(e5, 16 * f, KERNEL, 1, DROPOUT), 16 * f, KERNEL, 1, DROPOUT)
    d = b
    for skip, filters in ((e4, 16 * f), (e3, 8 * f), (e2, 4 * f), (e1, 2 * f)):
        d = layers.Concatenate()([layers.UpSampling2D(2)(d), skip])
        d = conv_block(d, filters, KERNEL, 1, 0.0)
    out = layers.Conv2D(CLASSES, 1, activation="softmax")(d)
    return models.Model(inp, out)


def keras_worker() -> None:
    """Line protocol on stdin/stdout: ``train N`` / ``predict N`` -> seconds for N batches."""
    import numpy as np
    import tensorflow as tf

    tf.keras.mixed_precision.set_global_policy("float32")
    model = keras_unet()

    def dice_loss(y_true, y_pred):  # noqa: ANN001, ANN202 - Gym's batch Dice, s = 1e-5
        inter = tf.reduce_sum(y_true * y_pred, axis=(0, 1, 2))
        total = tf.reduce_sum(y_true, axis=(0, 1, 2)) + tf.reduce_sum(y_pred, axis=(0, 1, 2))
        return 1.0 - tf.reduce_mean((2.0 * inter + 1e-5) / (total + 1e-5))

    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4), loss=dice_loss)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZE, SIZE, BANDS), dtype=np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, (BATCH, SIZE, SIZE))]
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # trace + warm up
    model.predict_on_batch(x)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    print(json.dumps({"ready": True, "trainable": trainable, "tf": tf.__version__}), flush=True)
    class StepClock(tf.keras.callbacks.Callback):
        """Wall time from the first batch's start to the last batch's end: ``model.fit``
        sometimes idles 1-5 s after its last batch (same CPU time, measured), a per-call cost
        that Gym pays once per epoch, not once per batch."""

        def on_train_batch_begin(self, batch, logs=None):  # noqa: ANN001, ANN202
            if batch == 0:
                self.first = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001, ANN202
            self.last = time.perf_counter()  # the logs reach numpy here: the step is done

    for line in sys.stdin:
        what, n = line.split()
        tick, cpu = time.perf_counter(), time.process_time()
        if what == "train":
            clock = StepClock()
            model.fit(data, steps_per_epoch=int(n), epochs=1, verbose=0, callbacks=[clock])
            seconds, call = clock.last - clock.first, time.perf_counter() - tick
        else:
            for _ in range(int(n)):
                model.predict_on_batch(x)
            seconds = call = time.perf_counter() - tick
        print(json.dumps({"seconds": seconds, "call_seconds": call,
                          "cpu": time.process_time() - cpu}), flush=True)


# ----------------------------------------------------------------- the raygym side (driver)
def ensure_venv(venv: Path, create: bool) -> Path:
    """The venv's python, creating the venv with :data:`TF_PIN` when asked."""
    python = venv / "bin" / "python"
    if not python.exists():
        if not create:
            sys.exit(f"no Keras venv at {venv}: pass --create (pip installs {TF_PIN}) or --venv")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", TF_PIN], check=True)
    return python


class KerasChild:
    """The persistent Keras process."""

    def __init__(self, python: Path, threads: int) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": str(threads),
               "TF_NUM_INTEROP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([str(python), __file__, "--keras-worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()
        self.idle_s: list[float] = []  # per call: wall outside the timed batches

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError("the Keras process ended early")

    def rate(self, what: str, steps: int) -> tuple[float, float]:
        """(img/s, process CPU seconds per batch) over ``steps`` batches."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{what} {steps}\n")
        self.proc.stdin.flush()
        got = self._read()
        self.idle_s.append(got["call_seconds"] - got["seconds"])
        return steps * BATCH / got["seconds"], got["cpu"] / steps

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class RaygymSide:
    """raygym's gym_unet, trained and run through the loop's own step pieces; ``fused=False``
    swaps ``raygym.models.fused`` for PyTorch's own ops."""

    def __init__(self, precision: str, fused: bool = True) -> None:
        import torch

        from raygym.inference.runtime import logits, to_layout
        from raygym.models import build_model
        from raygym.models.fused import fast_paths
        from raygym.train.losses import build_loss

        torch.manual_seed(0)
        self.torch, self.logits, self.precision = torch, logits, precision
        self.fast_paths, self.fused = fast_paths, fused
        self.model = to_layout(build_model("gym_unet", in_channels=BANDS, num_classes=CLASSES,
                                           filters=FILTERS, kernel=KERNEL, dropout=DROPOUT),
                               True)
        self.trainable = sum(p.numel() for p in self.model.parameters())
        self.loss = build_loss("dice", CLASSES, None)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.x = torch.randn(BATCH, BANDS, SIZE, SIZE)
        self.y = torch.randint(0, CLASSES, (BATCH, SIZE, SIZE))
        self.rate("train", 1)
        self.rate("predict", 1)

    def rate(self, what: str, steps: int) -> tuple[float, float]:
        """(img/s, process CPU seconds per batch) over ``steps`` batches."""
        with self.fast_paths(self.fused):
            return self._rate(what, steps)

    def _rate(self, what: str, steps: int) -> tuple[float, float]:
        torch, cpu = self.torch, self.torch.device("cpu")
        tick, cpu_tick = time.perf_counter(), time.process_time()
        for _ in range(steps):
            if what == "train":
                self.model.train()
                self.opt.zero_grad(set_to_none=True)
                out = self.logits(self.model, self.x, device=cpu, precision=self.precision,
                                  channels_last=True)
                self.loss(out, self.y).backward()
                self.opt.step()
            else:
                self.model.eval()
                with torch.no_grad():
                    self.logits(self.model, self.x, device=cpu, precision=self.precision,
                                channels_last=True).softmax(1)
        return (steps * BATCH / (time.perf_counter() - tick),
                (time.process_time() - cpu_tick) / steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--create", action="store_true", help=f"create the venv ({TF_PIN})")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="batches per timed measurement")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16-mixed"],
                   choices=["fp32", "bf16-mixed"])
    p.add_argument("--stock", action="store_true",
                   help="also time raygym with PyTorch's own ops (no raygym.models.fused)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="glibc reuses freed memory in raygym's process (raygym.allocator)")
    p.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_worker:
        keras_worker()
        return 0
    # raygym before torch, as in the CLI: `import raygym` sets OMP_WAIT_POLICY=PASSIVE (unless
    # set) before libgomp loads, so this side runs with the threads users get
    from raygym.allocator import keep_freed_memory  # isort: skip

    import torch  # isort: skip

    keep = args.keep_freed_memory and keep_freed_memory()
    torch.set_num_threads(args.threads)
    keras = KerasChild(ensure_venv(args.venv, args.create), args.threads)
    sides = {prec: RaygymSide(prec) for prec in args.precision}
    if args.stock:
        sides.update({f"{prec} stock": RaygymSide(prec, fused=False) for prec in args.precision})
    assert all(s.trainable == GYM_TRAINABLE for s in sides.values())
    assert keras.info["trainable"] == GYM_TRAINABLE
    rates: dict[str, list[tuple[float, float]]] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for what in ("train", "predict"):
            rates.setdefault(f"keras {what}", []).append(keras.rate(what, args.steps))
            for prec, side in sides.items():
                rates.setdefault(f"raygym {prec} {what}", []).append(side.rate(what,
                                                                               args.steps))
        loads.append(os.getloadavg()[0])
    keras.close()
    print(f"bench_keras: gym_unet f8 k7, batch {BATCH}, {SIZE} px, {args.threads} threads, "
          f"TF {keras.info['tf']} vs torch {torch.__version__}, {args.rounds} rounds x "
          f"{args.steps} batches, alternating, raygym keeps freed memory: {keep}; "
          f"load average (1 min) "
          f"{min(loads):.1f}-{max(loads):.1f}\n")
    print("| side | step | img/s median | spread | x Keras | CPU s/batch median | spread "
          "| x Keras (CPU) |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for key, pairs in rates.items():
        who, *prec, what = key.split()
        img_s, cpu_s = [p[0] for p in pairs], [p[1] for p in pairs]
        keras_pairs = rates[f"keras {what}"]
        med, cpu_med = statistics.median(img_s), statistics.median(cpu_s)
        ratio = med / statistics.median(p[0] for p in keras_pairs)
        cpu_ratio = statistics.median(p[1] for p in keras_pairs) / cpu_med
        print(f"| {who} {' '.join(prec) or 'fp32 graph'} | {what} | {med:.2f} | "
              f"{min(img_s):.2f}-{max(img_s):.2f} | {ratio:.2f} | {cpu_med:.3f} | "
              f"{min(cpu_s):.3f}-{max(cpu_s):.3f} | {cpu_ratio:.2f} |")
    idle = [s for s in keras.idle_s if s > 0.2]
    print(f"\nKeras train is timed from its first batch's start to its last batch's end; "
          f"model.fit idled after its last batch in {len(idle)} of {len(keras.idle_s)} calls"
          + (f" ({min(idle):.1f}-{max(idle):.1f} s, not counted)" if idle else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
