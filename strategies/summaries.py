"""Writes the study metrics to TensorBoard and to a CSV file, from a custom loop or Keras."""

from __future__ import annotations

import os
import time
from typing import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from strategies.study import StudyRecorder

# How many recorded steps the selection heatmap shows.
HEATMAP_STEPS = 64


class StudyWriter:
  """Writes each step the recorder recorded: a CSV row and TensorBoard scalars.

  The CSV is tab-separated, its header line starts with `#`, and a rerun appends
  to it (the columns must match). TensorBoard gets every metric as a scalar, the
  running selection rate of each worker (`selection-rate/worker-NN`) and a
  heatmap image of which workers the rule kept over the last recorded steps
  (`selection/kept`: a worker per row, a recorded step per column, kept in
  white, with the Byzantine workers' rows labelled in red).
  """

  def __init__(self, recorder: StudyRecorder, csv_path: str | None = None,
               summary_writer: tf.summary.SummaryWriter | None = None,
               initial_params: Sequence[tf.Variable] | None = None,
               initial_values: Sequence[tf.Tensor | tf.Variable] | None = None,
               extras: Callable[[], Mapping[str, float]] | None = None):
    """`initial_params`: the model's variables, for the distance from their values now,
    or from `initial_values` (e.g. the first step's values kept in a checkpoint).
    `extras`: more values for each written step, read then (e.g. the UDP transport's delivery); the names it
    gives on the first call are its columns."""
    self.recorder = recorder
    self._extras = extras
    self.summary_writer = summary_writer
    self._params = list(initial_params) if initial_params is not None else None
    if initial_values is not None:
      if self._params is None:
        raise ValueError("initial_values given without initial_params: pass the model's variables too")
      if [tuple(v.shape) for v in initial_values] != [tuple(p.shape) for p in self._params]:
        raise ValueError(f"initial_values do not match initial_params in shapes: "
                         f"{[tuple(v.shape) for v in initial_values]} vs {[tuple(p.shape) for p in self._params]}")
    source = initial_values if initial_values is not None else self._params
    self._initial = [tf.identity(p) for p in source] if source is not None else None
    self._selected_history: list[np.ndarray] = []
    self._step_history: list[int] = []
    self._last_written = -1
    self.columns = ["step", "walltime", "loss"]
    if self._params is not None:
      self.columns.append("params/distance-from-init")
    self.columns += recorder.names
    self._extra_names = list(extras()) if extras is not None else []
    self.columns += self._extra_names
    if recorder.selects:
      self.columns += [f"selected/worker-{i:02d}" for i in range(recorder.nb_workers)]
    self._csv = _open_csv(csv_path, self.columns) if csv_path else None

  def write_if_recorded(self, loss: float | None = None) -> bool:
    """Writes the last recorded step if not written yet; returns whether it wrote."""
    if self.recorder.recorded_step is None:
      return False
    step = int(self.recorder.recorded_step.numpy())
    if step <= self._last_written:
      return False
    self._last_written = step
    values: dict[str, float] = {name: float(variable.numpy()) for name, variable in self.recorder.values.items()}
    if loss is not None:
      values["loss"] = float(loss)
    if self._extras is not None:
      extra = self._extras()
      values.update({name: float(extra.get(name, float("nan"))) for name in self._extra_names})
    if self._params is not None:
      squares = [tf.reduce_sum(tf.square(tf.cast(p, tf.float64) - tf.cast(p0, tf.float64)))
                 for p, p0 in zip(self._params, self._initial)]
      values["params/distance-from-init"] = float(tf.sqrt(tf.add_n(squares)).numpy())
    selected = self.recorder.selected.numpy() if self.recorder.selects else None
    if self._csv is not None:
      row = [str(step), f"{time.time():.3f}"]
      row += [_format(values.get(column)) for column in self.columns[2:len(self.columns) - (
          self.recorder.nb_workers if selected is not None else 0)]]
      if selected is not None:
        row += [str(int(kept)) for kept in selected]
      self._csv.write("\t".join(row) + "\n")
      self._csv.flush()
    if self.summary_writer is not None:
      self._summarise(step, values, selected)
    return True

  def _summarise(self, step: int, values: dict[str, float], selected: np.ndarray | None) -> None:
    with self.summary_writer.as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)
      if selected is not None:
        for worker, rate in enumerate(self.recorder.selection_rates().numpy()):
          tf.summary.scalar(f"selection-rate/worker-{worker:02d}", rate)
        self._selected_history = (self._selected_history + [selected])[-HEATMAP_STEPS:]
        self._step_history = (self._step_history + [step])[-HEATMAP_STEPS:]
        kept = np.stack(self._selected_history, axis=1)  # (workers, steps)
        byzantine = range(self.recorder.nb_workers - self.recorder.nb_real_byz_workers, self.recorder.nb_workers)
        tf.summary.image("selection/kept", selection_heatmap(kept, self._step_history, byzantine)[None],
                         description=f"Which workers (rows) the rule kept at each of the last {kept.shape[1]} "
                                     "recorded steps (columns, newest on the right): white = kept. The Byzantine "
                                     f"workers ({', '.join(map(str, byzantine)) or 'none'}) are labelled in red.")
    self.summary_writer.flush()

  def close(self) -> None:
    if self._csv is not None:
      self._csv.close()
      self._csv = None


class StudyCallback(keras.callbacks.Callback):
  """Keras callback: writes the study metrics of a `ByzantineStrategy` (or a cluster's `RemoteWorkers`) during `fit`."""

  def __init__(self, strategy, csv_path: str | None = None, summary_dir: str | None = None):
    super().__init__()
    if strategy.study.period <= 0:
      raise ValueError("StudyCallback needs a strategy built with study_period > 0")
    self.strategy = strategy
    self.csv_path = csv_path
    self.summary_dir = summary_dir
    self.writer: StudyWriter | None = None

  def on_train_begin(self, logs=None):
    summary_writer = tf.summary.create_file_writer(self.summary_dir) if self.summary_dir else None
    self.writer = StudyWriter(self.strategy.study, self.csv_path, summary_writer,
                              [v.value if hasattr(v, "value") else v for v in self.model.trainable_variables])

  def on_train_batch_end(self, batch, logs=None):
    self.writer.write_if_recorded(loss=(logs or {}).get("loss"))

  def on_train_end(self, logs=None):
    self.writer.close()


def selection_heatmap(kept: np.ndarray, steps: Sequence[int], byzantine: Sequence[int]) -> np.ndarray:
  """An RGB image (uint8, H x W x 3) of `kept` (workers x steps, 1 = kept) with worker and step axes,
  the Byzantine workers' labels in red."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  workers, columns = kept.shape
  figure = Figure(figsize=(min(2.5 + 0.12 * columns, 12), min(1.2 + 0.22 * workers, 12)), dpi=100,
                  layout="constrained")
  canvas = FigureCanvasAgg(figure)
  axis = figure.subplots()
  axis.imshow(kept, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
  marked = set(byzantine)
  every = max(1, workers // 16)
  rows = list(range(0, workers, every))
  axis.set_yticks(rows, [f"{row} (Byzantine)" if row in marked else str(row) for row in rows], fontsize=7)
  for label, row in zip(axis.get_yticklabels(), rows):
    if row in marked:
      label.set_color("tab:red")
  ticks = list(range(0, columns, max(1, columns // 8)))
  axis.set_xticks(ticks, [str(steps[i]) for i in ticks], fontsize=7)
  axis.set_xlabel("step", fontsize=8)
  axis.set_ylabel("worker", fontsize=8)
  axis.set_title("kept by the rule (white)", fontsize=8)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def _format(value: float | None) -> str:
  return "nan" if value is None else repr(float(value))


def _open_csv(path: str, columns: list[str]):
  header = "# " + "\t".join(columns) + "\n"
  if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path, encoding="utf-8") as existing:
      first = existing.readline()
    if first != header:
      raise ValueError(f"{path} already holds study metrics with other columns; give another file or move it away")
    return open(path, "a", encoding="utf-8")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  handle = open(path, "w", encoding="utf-8")
  handle.write(header)
  return handle
