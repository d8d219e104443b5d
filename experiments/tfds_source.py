"""Loading a dataset through tensorflow-datasets, without ever hanging offline.

If the dataset is already prepared in the data directory it is read from there.
Otherwise tfds would download it; we first check, with a short timeout, that the
download host (or the configured proxy) answers, and raise a clear error that
says what to do when it does not, instead of letting tfds retry for minutes.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from typing import Any

import numpy as np

# Seconds given to the reachability check, DNS look-up included.
TIMEOUT = 3.0


class DataUnavailableError(FileNotFoundError, ValueError):
  """The data is neither on disk nor downloadable; the message says how to provide it."""


def reachable(url: str, timeout: float = TIMEOUT) -> bool:
  """Whether a TCP connection to `url`'s host (or the proxy for it) opens within `timeout` seconds.

  The check runs in a daemon thread: `socket.create_connection` bounds the
  connection by its timeout but not the DNS look-up, which can block far longer.
  """
  parsed = urllib.parse.urlsplit(url)
  host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
  proxy = urllib.request.getproxies().get(parsed.scheme)
  if proxy and host and not urllib.request.proxy_bypass(host):
    proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = proxied.hostname, proxied.port or 80
  if not host:
    raise ValueError(f"cannot check the reachability of {url!r}: it names no host")
  outcome: list[bool] = []

  def attempt() -> None:
    try:
      socket.create_connection((host, port), timeout=timeout).close()
      outcome.append(True)
    except OSError:
      outcome.append(False)

  thread = threading.Thread(target=attempt, daemon=True, name=f"reachable:{host}")
  thread.start()
  thread.join(timeout)
  return bool(outcome and outcome[0])


def _import_tfds() -> Any:
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise DataUnavailableError("tensorflow-datasets is not installed; install it with "
                               "`pip install tensorflow-datasets` (or `pip install -e '.[tfds]'`)") from None
  return tfds


def load(tfds_name: str, data_dir: str | os.PathLike | None, download_url: str,
         hint: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(x_train, y_train, x_test, y_test) of a supervised tfds dataset, as numpy arrays.

  `data_dir` is the tfds data directory (None: tfds's default, `$TFDS_DATA_DIR`
  or ~/tensorflow_datasets). `download_url` is where tfds downloads the dataset
  from, checked before any download. `hint` adds dataset-specific ways out to
  the error raised when the dataset is neither prepared nor downloadable.
  """
  tfds = _import_tfds()
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  if not builder.is_prepared():
    if not reachable(download_url):
      root = os.path.dirname(os.path.dirname(builder.data_dir))  # <root>/<name>/<version>
      ways_out = [hint] if hint else []
      ways_out.append(f"on a machine with network access, run `python -c \"import tensorflow_datasets as tfds; "
                      f"tfds.builder('{tfds_name}', data_dir='DIR').download_and_prepare()\"`, then copy "
                      f"DIR/{tfds_name} into {root} (or pass data-dir:DIR)")
      raise DataUnavailableError(
          f"tensorflow-datasets dataset {tfds_name!r} is not prepared in the data directory {root} "
          f"(looked for {builder.data_dir}) and cannot be downloaded: {download_url} is unreachable "
          f"(no network?). Ways out: " + "; or ".join(ways_out))
    try:
      builder.download_and_prepare()
    except ModuleNotFoundError as error:
      if error.name != "importlib_resources":
        raise
      # tensorflow-datasets uses it on every Python but declares it only below 3.9
      # (https://github.com/tensorflow/datasets/issues/11212).
      raise DataUnavailableError(
          f"tensorflow-datasets cannot prepare {tfds_name!r}: it needs the package importlib_resources, which "
          f"it fails to declare (tensorflow/datasets#11212); install it with `pip install importlib_resources`"
      ) from error
  arrays = []
  for split in ("train", "test"):
    x, y = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
    arrays += [np.asarray(x), np.asarray(y)]
  return tuple(arrays)  # type: ignore[return-value]
