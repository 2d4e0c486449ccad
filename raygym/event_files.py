"""TensorBoard event files, written at once in the caller's thread: a search's trials (through
Tune's own logger) and ``raygym train``'s runs (:class:`raygym.train.tracking.EpochLogger`).

Tune's ``TBXLoggerCallback`` turns every trial result into TensorBoard scalars (tags
``ray/tune/<metric>``, the step Tune's ``training_iteration``) and, when a trial ends, its
hyperparameters and last metrics for TensorBoard's HParams view. raygym keeps that callback
and all it writes, but hands it :class:`TensorBoardWriter` instead of tensorboardX's
``SummaryWriter`` (:func:`raygym.compat.tbx_callback_with_writer`).

Why: the driver writes every trial's results in one thread. tensorboardX's writer passes each
scalar through a multiprocessing queue to a thread of its own (a pipe and two threads per
trial), and Tune flushes it after every result, which syncs the file to disk (``fsync``). In
a search of 1,000 trials, 32 at once, Tune's logger took 4-19 ms of the driver's 43-62 ms of
CPU per trial; the writer alone 11.3 ms per trial, against 2.5 ms for :class:`TensorBoardWriter`
(``bench/RESULTS.md``, bench_scale, eleventh pass; ``bench/bench_tensorboard.py``). It appends
each event to its file in the caller's thread, hands the file to the operating system after
every result (TensorBoard sees it at once) and syncs it to disk when the trial ends.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import time
from typing import IO, Any

from tensorboardX import summary
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c


def tfrecord(data: bytes) -> bytes:
    """One record of a TFRecord file (TensorBoard's event files): the length (8 bytes, little
    endian), its masked CRC-32C, the data and the data's masked CRC-32C."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc32c(header)) + data
            + struct.pack("<I", masked_crc32c(data)))


def new_event_file(logdir: str) -> str:
    """A path for a new event file in ``logdir`` (tensorboardX's name: ``events.out.tfevents.
    <seconds>.<host>``), with a suffix where that file exists: a trial or run restarted
    within the same second must not write over its first file."""
    base = os.path.join(logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}")
    path, n = base, 0
    while os.path.exists(path):
        n += 1
        path = f"{base}.{n}"
    return path


@functools.cache
def tensorflow_bins() -> list[float]:
    """The bin edges tensorboardX's ``SummaryWriter`` gives a histogram by default (those of
    TensorFlow's summaries): +-1e-12 growing by 10 % per bin to +-1e20, and 0."""
    edges, v = [], 1e-12
    while v < 1e20:
        edges.append(v)
        v *= 1.1
    return [-e for e in reversed(edges)] + [0.0] + edges


class TensorBoardWriter:
    """What Tune's ``TBXLoggerCallback`` calls of tensorboardX's ``SummaryWriter`` (scalars,
    histograms, images, video, and raw summaries through ``file_writer``), written at once in
    the caller's thread into one event file of ``logdir``.

    Each ``add_*`` appends one event (wall time, step, summary) to a buffered file;
    :meth:`flush` hands it to the operating system (no ``fsync``: TensorBoard reads it from
    there); :meth:`close` syncs it to disk and closes it. ``flush_secs`` is taken as Tune
    passes it and not used: nothing waits in a queue to be flushed.
    """

    def __init__(self, logdir: str, flush_secs: float = 0, **_: Any) -> None:
        os.makedirs(logdir, exist_ok=True)
        self.path = new_event_file(logdir)
        self._file: IO[bytes] | None = open(self.path, "xb")  # noqa: SIM115 - closed in close()
        self.file_writer = self  # Tune writes its HParams summaries via writer.file_writer
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Any) -> None:
        if self._file is not None:
            self._file.write(tfrecord(event.SerializeToString()))

    def add_summary(self, summary_proto: Any, global_step: int | None = None) -> None:
        event = event_pb2.Event(wall_time=time.time(), summary=summary_proto)
        if global_step is not None:
            event.step = int(global_step)
        self._write(event)

    def add_scalar(self, tag: str, value: Any, global_step: int | None = None) -> None:
        self.add_summary(summary.scalar(tag, value), global_step)

    def add_histogram(self, tag: str, values: Any, global_step: int | None = None,
                      bins: Any = "tensorflow") -> None:
        if isinstance(bins, str) and bins == "tensorflow":
            bins = tensorflow_bins()
        self.add_summary(summary.histogram(tag, values, bins), global_step)

    def add_image(self, tag: str, img: Any, global_step: int | None = None,
                  dataformats: str = "CHW") -> None:
        self.add_summary(summary.image(tag, img, dataformats=dataformats), global_step)

    def add_images(self, tag: str, imgs: Any, global_step: int | None = None,
                   dataformats: str = "NCHW") -> None:
        self.add_summary(summary.image(tag, imgs, dataformats=dataformats), global_step)

    def add_video(self, tag: str, video: Any, global_step: int | None = None,
                  fps: float = 4) -> None:
        self.add_summary(summary.video(tag, video, fps=fps), global_step)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
