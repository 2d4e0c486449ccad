"""raygym's TensorBoard event writer (a search's trials, train runs): real files, read back by TensorBoard's
own reader and compared with what tensorboardX writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorboardX.summary import hparams

from raygym.event_files import TensorBoardWriter, tfrecord

accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read(path: Path) -> object:
    """TensorBoard's reader over one event file (or a folder of them)."""
    acc = accumulator.EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_scalars_are_readable_after_each_flush_and_after_close(tmp_path: Path) -> None:
    writer = TensorBoardWriter(str(tmp_path / "trial"))
    for step, value in [(1, 0.25), (2, 0.5)]:
        writer.add_scalar("ray/tune/val_mean_iou", value, global_step=step)
    writer.flush()  # what Tune calls after each result: TensorBoard sees it before the end
    seen = read(Path(writer.path))
    assert [(e.step, e.value) for e in seen.Scalars("ray/tune/val_mean_iou")] == [
        (1, 0.25), (2, 0.5)]
    writer.add_scalar("ray/tune/val_mean_iou", 0.75, global_step=3)
    writer.add_histogram("ray/tune/per_class", np.array([0.1, 0.2, 0.9]), global_step=3)
    writer.close()
    writer.close()  # twice: no error, nothing written
    writer.add_scalar("ray/tune/val_mean_iou", 9.0, global_step=4)  # after close: dropped
    seen = read(Path(writer.path))
    assert [e.value for e in seen.Scalars("ray/tune/val_mean_iou")] == [0.25, 0.5, 0.75]
    [hist] = seen.Histograms("ray/tune/per_class")
    assert hist.step == 3 and hist.histogram_value.num == 3


def test_hparams_summaries_reach_tensorboards_hparams_plugin(tmp_path: Path) -> None:
    writer = TensorBoardWriter(str(tmp_path))
    # as Tune's TBXLoggerCallback writes them when a trial ends
    for proto in hparams({"model/filters": 8, "loss/name": "dice"}, {"ray/tune/iou": 0.7}):
        writer.file_writer.add_summary(proto)
    writer.close()
    content = read(tmp_path).PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info",
                            "_hparams_/session_end_info"}


def test_records_are_framed_as_tensorboardx_frames_them(tmp_path: Path) -> None:
    from tensorboardX.record_writer import RecordWriter

    records = [b"", b"x", bytes(range(256)) * 3]
    theirs = tmp_path / "theirs"
    writer = RecordWriter(str(theirs))
    for data in records:
        writer.write(data)
    writer.close()
    assert b"".join(tfrecord(d) for d in records) == theirs.read_bytes()


def test_a_second_writer_in_the_same_second_keeps_the_first_file(tmp_path: Path) -> None:
    first = TensorBoardWriter(str(tmp_path))
    first.add_scalar("a", 1.0, global_step=1)
    first.close()
    second = TensorBoardWriter(str(tmp_path))  # a restarted trial, same folder
    second.add_scalar("a", 2.0, global_step=2)
    second.close()
    assert first.path != second.path
    assert [e.value for e in read(Path(first.path)).Scalars("a")] == [1.0]
    assert [e.value for e in read(Path(second.path)).Scalars("a")] == [2.0]
