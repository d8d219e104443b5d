"""A worker process: computes gradient rows on its own devices and data shard, when the parameter server asks.

It serves two methods over gRPC with mutual TLS, to the parameter server alone:
- `Configure(job)`: the job as JSON data (experiment name and arguments, seed,
  this worker's index, hyper-parameters); nothing in it is code. A new job
  replaces the previous one, so one deployment runs many experiments.
- `Compute(weights of step s)`: sets the model to the weights, takes this
  worker's slice of global batch s (the same split and batches as local mode),
  and answers the gradient row of step s, with its loss and accuracy.

With an attack (`deploy.py ... --attack NAME`) the process is a real Byzantine
worker: it builds its row from what it can see, its own gradients. It computes
`nb_workers - nb_real_byz_workers` gradients on as many of its own minibatches,
stands them for the honest ones (the attacks' mean and spread), and sends the
attack's vector.

With a redundancy defence (DETOX, ByzShield) in the job, a worker computes
the files the placement gives it, file j being slice j of the F slices of
the global batch (as in local mode), and sends their gradients end to end; a
Byzantine one sends its attack's vector (against the rule across the F files)
for each of its copies.
"""

from __future__ import annotations

import json
import signal
import threading
from concurrent import futures
from typing import Any, Mapping

import grpc
import numpy as np
import tensorflow as tf
from absl import logging

from strategies.cluster import credentials, real_attack, wire
from strategies.cluster.spec import Address, ClusterError

SERVICE = "aggregathor.Worker"
CONFIGURE = f"/{SERVICE}/Configure"
COMPUTE = f"/{SERVICE}/Compute"
# A job message is small JSON; a weights message is bounded by the largest model served.
MAX_JOB_BYTES = 1 << 20
DEFAULT_MAX_MESSAGE_BYTES = 1 << 30

# The job's fields, with their types, for each kind of job: anything else is refused.
COMMON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "run": str, "kind": str, "seed": int, "worker": int, "nb_workers": int, "nb_decl_byz_workers": int,
    "nb_real_byz_workers": int, "aggregator": str, "aggregator_args": dict, "gradient_clip": (int, float, type(None)),
    "momentum": (int, float), "dampening": (int, float), "momentum_at": str, "dimension": int,
    # Over UDP (see strategies.cluster.udp): where to send the rows, under which key, in datagrams of what size.
    "udp": (dict, type(None)),
}
JOB_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    # runner.py --server: an experiment by name, whose data each worker reads itself.
    # With local_steps K > 1, a worker takes K plain SGD steps at the step's learning rate (from the schedule
    # named, evaluated at the step) and sends its model's change divided by that rate, as in local mode.
    "experiment": {**COMMON_FIELDS, "experiment": str, "experiment_args": dict, "label_flip": bool,
                   "l1_regularize": (int, float), "l2_regularize": (int, float), "local_steps": int,
                   "learning_rate": str, "learning_rate_args": dict, "redundancy": (dict, type(None)),
                   # A compressor's configuration (Compressor.get_config): the worker sends its payload instead of
                   # its row (see strategies.cluster.payloads), its state (residual) kept here.
                   "compression": (dict, type(None))},
    # keras_fit: a Keras model's configuration (JSON data, deserialized in safe mode) and its loss; the data
    # come with each step, in these per-example shapes and dtypes, at most max_examples at a time.
    # With "redundancy" ({"placement", "replication", "args", "file_f"}: DETOX or ByzShield), the worker computes
    # the files the placement gives it, file j being slice j of F of the global batch as in local mode, and sends
    # their gradients end to end; a Byzantine one sends the attack's vector for each.
    "keras": {**COMMON_FIELDS, "model": str, "loss": (str, dict), "x_shape": list, "x_dtype": str, "y_shape": list,
              "y_dtype": str, "max_examples": int},
}


# A HiPS party server's (see strategies.cluster.party): an experiment job whose worker is the party's index among
# `parties`, its rule, f and nb_workers the party level's (all workers), its compression that of the party's push.
JOB_FIELDS["party"] = {**JOB_FIELDS["experiment"], "parties": int}
# Fields a job may leave out: a party's worker reads data share `shard` of nb_workers (default: its own index).
OPTIONAL_FIELDS: dict[str, dict[str, type]] = {"experiment": {"shard": int}}


def check_job(job: Any) -> dict[str, Any]:
  """The job as the parameter server sent it, checked field by field."""
  if not isinstance(job, dict):
    raise ValueError(f"expected the job as a JSON object, got {type(job).__name__}")
  if job.get("kind") not in JOB_FIELDS:
    raise ValueError(f"job kind {job.get('kind')!r}: expected one of {', '.join(JOB_FIELDS)}")
  optional = OPTIONAL_FIELDS.get(job["kind"], {})
  fields = {**JOB_FIELDS[job["kind"]], **{name: types for name, types in optional.items() if name in job}}
  missing, unknown = sorted(set(fields) - set(job)), sorted(set(job) - set(fields))
  if missing or unknown:
    raise ValueError(f"job fields: missing {missing or 'none'}, unknown {unknown or 'none'}")
  for field, types in fields.items():
    if not isinstance(job[field], types) or (types is int and isinstance(job[field], bool)):
      raise ValueError(f"job field {field} must be {types}, got {job[field]!r}")
  if not 0 <= job["worker"] < job["nb_workers"]:
    raise ValueError(f"job: worker {job['worker']} out of range for {job['nb_workers']} workers")
  if not 0 <= job.get("shard", 0) < job["nb_workers"]:
    raise ValueError(f"job: data share {job['shard']} out of range for {job['nb_workers']} workers")
  if job["kind"] == "party" and not 0 <= job["worker"] < job["parties"] <= job["nb_workers"]:
    raise ValueError(f"job: party {job['worker']} out of range for {job['parties']} parties of "
                     f"{job['nb_workers']} workers")
  return job


class BatchStream:
  """An iterator over a dataset's batches that knows its position, rebuilt when asked for another (a resumed run)."""

  def __init__(self, dataset: tf.data.Dataset):
    self.dataset = dataset
    self._iterator = None
    self._position = -1  # the index of the batch the iterator gives next

  def at(self, position: int, count: int):
    """The iterator at batch `position`, which the caller advances by `count`."""
    if self._iterator is None or position != self._position:
      self._iterator = iter(self.dataset.skip(position))
    self._position = position + count
    return self._iterator


class WorkerJob:
  """What one job needs on this worker: its model, data iterator, momentum and attack."""

  def __init__(self, job: Mapping[str, Any], attack: str | None, attack_args: Mapping[str, Any]):
    import experiments  # pylint: disable=g-import-not-at-top
    from strategies import schedules, training  # pylint: disable=g-import-not-at-top

    self.job = dict(job)
    n, index = job["nb_workers"], job.get("shard", job["worker"])
    self.experiment = experiments.get(job["experiment"], **job["experiment_args"])
    self.experiment.load()
    import keras  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(job["seed"])
    self.model = self.experiment.build_model()
    self.variables = list(self.model.trainable_variables)
    self.shapes = [tuple(v.shape) for v in self.variables]
    self.dimension = int(sum(np.prod(shape) for shape in self.shapes))
    if self.dimension != job["dimension"]:
      raise ValueError(f"the job's model has {self.dimension} parameters here, {job['dimension']} on the "
                       "parameter server: the two run different code versions")
    self.batch_size = self.experiment.args["batch-size"]
    self.index = index
    flipped = range(n - job["nb_real_byz_workers"], n) if job["label_flip"] else ()
    self._own = BatchStream(self.experiment.worker_dataset(n, index, flipped_workers=flipped, seed=job["seed"]))
    if job["local_steps"] < 1:
      raise ValueError(f"job: local_steps must be >= 1, got {job['local_steps']}")
    self.local_steps = job["local_steps"]
    self._schedule = schedules.build(job["learning_rate"], job["learning_rate_args"])
    self.files, self._streams, attack_view = (), [self._own], {}
    if job["redundancy"] is not None:
      self.files, self._streams, attack_view = self._redundancy(job)
    self.attack = real_attack.RealAttack(job, attack, attack_args, **attack_view) if attack else None
    self.encoder = None
    if job["compression"] is not None:
      from strategies.cluster import payloads  # pylint: disable=g-import-not-at-top
      if job["redundancy"] is not None:
        raise ValueError("job: a redundancy defence takes no compression")
      self.encoder = payloads.PayloadEncoder(job["compression"], self.dimension)
    weight_indices = training.penalised_indices(self.model)
    l1, l2 = float(job["l1_regularize"]), float(job["l2_regularize"])
    clip, momentum, dampening = job["gradient_clip"], float(job["momentum"]), float(job["dampening"])
    worker_momentum = bool(momentum) and job["momentum_at"] == "worker" and self.attack is None
    model, variables, shapes = self.model, self.variables, self.shapes
    sizes = [int(np.prod(s)) for s in shapes]
    self._momentum = tf.Variable(tf.zeros([self.dimension]), trainable=False, name="worker_momentum")

    def gradient(weights, x, y):
      for variable, part in zip(variables, tf.split(weights, sizes)):
        variable.assign(tf.reshape(part, variable.shape))
      with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = training.penalised_loss(logits, y, [variables[i].value for i in weight_indices], l1, l2)
      gradients = tape.gradient(loss, variables)
      return tf.concat([tf.reshape(g, [-1]) for g in gradients], axis=0), loss, training.accuracy_of(logits, y)

    local_steps = self.local_steps

    @tf.function
    def honest_row(weights, iterator, learning_rate):
      # One call per step: the batches, the gradients, clipping and momentum, fused.
      if local_steps == 1:
        x, y = next(iterator)
        row, loss, accuracy = gradient(weights, x, y)
      else:
        current, losses, accuracies = weights, [], []
        for _ in range(local_steps):
          x, y = next(iterator)
          step_gradient, loss, accuracy = gradient(current, x, y)
          current = current - learning_rate * step_gradient
          losses.append(loss)
          accuracies.append(accuracy)
        row = (weights - current) / learning_rate
        loss, accuracy = tf.add_n(losses) / local_steps, tf.add_n(accuracies) / local_steps
      if clip is not None:
        row = row * tf.minimum(1.0, clip / tf.maximum(tf.norm(row), 1e-30))
      if worker_momentum:
        self._momentum.assign(momentum * self._momentum + (1.0 - dampening) * row)
        row = self._momentum.read_value()
      return row, loss, accuracy

    self._gradient = tf.function(gradient)
    self._honest_row = honest_row

  def _redundancy(self, job: Mapping[str, Any]) -> tuple[tuple[int, ...], list[BatchStream], dict[str, int]]:
    """This worker's files, their batch streams, and the attack's view: the rule across the F files, f of them."""
    from aggregathor import redundancy  # pylint: disable=g-import-not-at-top
    settings = job["redundancy"]
    if sorted(settings) != ["args", "file_f", "placement", "replication"]:
      raise ValueError(f"job field redundancy: expected placement, replication, args and file_f, got {sorted(settings)}")
    if job["label_flip"] or job["local_steps"] != 1:
      raise ValueError("job: a redundancy defence takes neither label_flip nor local_steps > 1")
    placement = redundancy.get(settings["placement"], nb_workers=job["nb_workers"],
                               replication=settings["replication"], **settings["args"])
    files = placement.files_of(self.index)
    streams = [BatchStream(self.experiment.worker_dataset(placement.nb_files, file, seed=job["seed"]))
               for file in files]
    return files, streams, {"nb_rows": placement.nb_files, "nb_byzantine": 1, "nb_declared": settings["file_f"]}

  def _batch(self, position: int):
    return next(self._own.at(position, 1))

  def learning_rate(self, step: int) -> float:
    """The parameter server's learning rate at `step` (its optimizer steps once per step)."""
    return float(self._schedule(step)) if callable(self._schedule) else float(self._schedule)

  def answer(self, request: bytes) -> bytes:
    """The row message answering a weights message (`wire.RefusedMessage` if it is not one)."""
    step, weights = wire.decode_weights(request, self.dimension)
    row, loss, accuracy = self.compute(step, weights)
    if self.encoder is not None:
      row = self.encoder.words(row)
    return wire.encode_row(step, row, loss, accuracy)

  def compute(self, step: int, weights: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The row this worker sends for step `step`, and its loss and accuracy."""
    if self.attack is not None:
      row, loss, accuracy = self._attack(step, tf.constant(weights))
      return np.tile(row, len(self._streams)), loss, accuracy  # one vector for all its copies
    rows, losses, accuracies = [], [], []
    learning_rate = tf.constant(self.learning_rate(step), tf.float32)
    for stream in self._streams:
      row, loss, accuracy = self._honest_row(weights, stream.at(step * self.local_steps, self.local_steps),
                                             learning_rate)
      rows.append(row.numpy())
      losses.append(float(loss))
      accuracies.append(float(accuracy))
    return np.concatenate(rows) if len(rows) > 1 else rows[0], float(np.mean(losses)), float(np.mean(accuracies))

  def _attack(self, step: int, weights: tf.Tensor) -> tuple[np.ndarray, float, float]:
    count = self.attack.nb_estimates
    estimates, losses, accuracies = [], [], []
    for offset in range(count):
      x, y = self._batch(step * count + offset)  # fresh minibatches of its own shard
      row, loss, accuracy = self._gradient(weights, x, y)
      estimates.append(row)
      losses.append(float(loss))
      accuracies.append(float(accuracy))
    return self.attack(estimates), float(np.mean(losses)), float(np.mean(accuracies))


class Responder:
  """One worker's jobs and answers, whatever carries them: gRPC (`WorkerService`) or MPI (`mpi.WorkerRank`)."""

  def __init__(self, index: int, attack: str | None = None, attack_args: Mapping[str, Any] | None = None):
    self.index = index
    self.attack = attack
    self.attack_args = dict(attack_args or {})
    self.job: Any = None  # a WorkerJob or a keras_job.KerasJob

  def check(self, message: bytes) -> dict[str, Any]:
    """The job in `message`, checked field by field and against this worker's index (ValueError if not)."""
    job = check_job(json.loads(message.decode("utf-8")))
    if job["worker"] != self.index:
      raise ValueError(f"this is worker {self.index}, the job is for worker {job['worker']}: check the order of "
                       "the worker job's tasks in the cluster JSON")
    return job

  def take(self, job: Mapping[str, Any]) -> bytes:
    """Builds `job` (a checked one) in place of the previous job; returns the reply the parameter server checks."""
    self.job = None
    if job["kind"] == "party":
      raise ValueError("the job is a HiPS party server's, and this task is a plain worker: start the party's server "
                       "with `deploy.py ... --party-cluster JSON --party-credentials DIR`")
    if job["kind"] == "keras":
      from strategies.cluster import keras_job  # pylint: disable=g-import-not-at-top
      self.job = keras_job.KerasJob(job, self.attack, self.attack_args)
    else:
      self.job = WorkerJob(job, self.attack, self.attack_args)
    logging.info("Worker %d: job %s configured (%s, %d parameters%s)", self.index, job["run"],
                 job.get("experiment", "a Keras model"), self.job.dimension,
                 f", Byzantine with {self.attack}" if self.attack else "")
    return json.dumps({"worker": self.index, "dimension": self.job.dimension, "run": job["run"],
                       "udp": job["udp"] is not None}).encode()

  def configure(self, message: bytes) -> bytes:
    """`check` then `take` (over MPI: a job over UDP is refused, the rows go through the MPI job)."""
    job = self.check(message)
    if job["udp"] is not None:
      raise ValueError("the job asks for UDP, and this worker is an MPI rank: its rows go through the MPI job")
    return self.take(job)

  def answer(self, request: bytes) -> bytes:
    """The row message answering a step's request (`wire.RefusedMessage` if it is not one)."""
    return self.job.answer(request)


class WorkerService:
  """The two methods, for the parameter server's identity only; one job at a time."""

  def __init__(self, index: int, attack: str | None = None, attack_args: Mapping[str, Any] | None = None,
               udp_workers: int = 0, udp_drop_rate: float = 0.0, responder: Responder | None = None):
    """`udp_workers`: this task sends its rows over UDP when the job asks, if its index is below it
    (`deploy.py --UDP N`); `udp_drop_rate`: the fraction of its datagrams it drops on purpose; `responder`: what
    takes the jobs and answers (default: a worker's; a HiPS party server's, see strategies.cluster.party)."""
    self.index = index
    self.responder = responder or Responder(index, attack, attack_args)
    self.udp_workers = udp_workers
    self.udp_drop_rate = udp_drop_rate
    self.sender: Any = None  # a udp.UdpSender while the job sends over UDP
    self._lock = threading.Lock()
    self.refused = 0

  @property
  def job(self) -> Any:
    return self.responder.job

  def _authorise(self, context: grpc.ServicerContext) -> None:
    names = context.auth_context().get("x509_subject_alternative_name", [])
    if credentials.dns_name(credentials.PS_IDENTITY).encode() not in names:
      self.refused += 1
      context.abort(grpc.StatusCode.PERMISSION_DENIED, "only the parameter server may call a worker")

  def configure(self, request: bytes, context: grpc.ServicerContext) -> bytes:
    self._authorise(context)
    try:
      job = self.responder.check(request)
      with self._lock:
        self.responder.job = None
        if self.sender is not None:
          self.sender.close()
          self.sender = None
        if job["udp"] is not None:
          if self.index >= self.udp_workers:
            raise ValueError(f"the parameter server asks worker {self.index} to send its rows over UDP, "
                             "authenticated but not encrypted, and this task allows it to workers below "
                             f"{self.udp_workers} only: restart it with `deploy.py ... --UDP N`, N > {self.index}, "
                             "or give runner.py a smaller --UDP")
          from strategies.cluster import udp  # pylint: disable=g-import-not-at-top
          self.sender = udp.UdpSender(job["udp"], self.index, self.udp_drop_rate, job["seed"])
        return self.responder.take(job)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, FileNotFoundError) as error:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"worker {self.index}: {error}")

  def compute(self, request: bytes, context: grpc.ServicerContext) -> bytes:
    self._authorise(context)
    with self._lock:
      if self.responder.job is None:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"worker {self.index} has no job: call Configure")
      try:
        answer = self.responder.answer(request)
      except wire.RefusedMessage as error:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"worker {self.index}: {error}")
      except ClusterError as error:  # a party server whose own workers fell short of its quorum
        context.abort(grpc.StatusCode.UNAVAILABLE, f"worker {self.index}: {error}")
      if self.sender is None:
        return answer
      # Over UDP: the values as datagrams, then the answer with the loss and accuracy alone.
      _, step, count, loss, accuracy = wire.ROW_HEADER.unpack_from(answer)
      self.sender.send(step, np.frombuffer(answer, wire.DTYPE, count, wire.ROW_HEADER.size))
      return wire.encode_row(step, np.zeros(0, np.float32), loss, accuracy)


def serve(address: Address, index: int, credentials_dir: str, attack: str | None = None,
          attack_args: Mapping[str, Any] | None = None,
          max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, udp_workers: int = 0,
          udp_drop_rate: float = 0.0, responder: Responder | None = None) -> None:
  """Serves worker `index` on `address` until SIGTERM or SIGINT (see `WorkerService` for the other arguments)."""
  logging.set_verbosity(logging.INFO)
  server_credentials = credentials.server_credentials(credentials_dir, index)
  service = WorkerService(index, attack, attack_args, udp_workers, udp_drop_rate, responder)
  handlers = {
      "Configure": grpc.unary_unary_rpc_method_handler(service.configure),
      "Compute": grpc.unary_unary_rpc_method_handler(service.compute),
  }
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
      ("grpc.max_receive_message_length", max_message_bytes),
      ("grpc.max_send_message_length", max_message_bytes),
      ("grpc.so_reuseport", 0),  # a second process on the same port must fail, not share it
  ])
  server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
  try:
    bound = server.add_secure_port(str(address), server_credentials)
  except RuntimeError as error:
    bound = 0
    reason = str(error)
  else:
    reason = "the port is in use or the host is not this machine's"
  if not bound:
    raise ClusterError(f"worker {index} cannot listen on {address}: {reason}; free the port or fix the cluster "
                       "JSON")
  stopped = threading.Event()
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stopped.set())
  server.start()
  print(f"worker {index} serving on {address}{' (Byzantine: ' + attack + ')' if attack else ''}", flush=True)
  stopped.wait()
  server.stop(grace=1).wait()
  print(f"worker {index} stopped", flush=True)
