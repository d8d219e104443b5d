#!/usr/bin/env bash
# Builds and installs Horovod 0.28.1 for TensorFlow 2.21 (its MPI collectives only), from the sdist, patched.
#
#   patches/horovod/install.sh PYTHON [--if-possible | --apt]
#
# Horovod 0.28.1, its latest release, ships as source and does not build against TF 2.21 as released: its
# XLA ops (horovod/tensorflow/xla_mpi_ops.cc) include XLA headers that have moved. This project uses the
# collectives alone (alltoall, broadcast), never XLA's Horovod ops nor Horovod's optimizer (which Keras 3
# breaks: horovod#4290), so the patch leaves that one file out of the build.
#
# The built wheel is cached under $AGGREGATHOR_CACHE (default ~/.cache/aggregathor/wheels), keyed by the
# Horovod, TensorFlow and Python versions and the patch: a second install takes seconds, not ~8 minutes.
# Needs an MPI (mpicc, mpirun: Debian's openmpi-bin and libopenmpi-dev), cmake, g++, and TensorFlow's
# extra headers' libraries (libhighwayhash-dev, libfarmhash-dev).
# --if-possible: without those tools, say what is missing and exit 0 (the MPI tests then skip).
# --apt: install the missing ones with apt-get first (as root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${1:?usage: patches/horovod/install.sh PYTHON [--if-possible | --apt]}
mode=${2:-}
export TF_CPP_MIN_LOG_LEVEL=3
version=0.28.1
sha256=92a43f5a94c43907a56805bad15f19700c62ffc83b7ca483f9e104e229f67ef0
debian_packages="openmpi-bin libopenmpi-dev libhighwayhash-dev libfarmhash-dev cmake g++ make"

if "$python" -c "import horovod.tensorflow as hvd, sys; sys.exit(0 if hvd.mpi_built() else 1)" 2>/dev/null; then
  exit 0  # already installed, with MPI
fi
find_missing() {
  missing=()
  for tool in mpicc mpirun cmake g++ make; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  for header in /usr/include/highwayhash/highwayhash.h /usr/include/farmhash.h; do
    [ -e "$header" ] || missing+=("$header")
  done
}
find_missing
if [ ${#missing[@]} -gt 0 ] && [ "$mode" = "--apt" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $debian_packages >/dev/null
  find_missing
fi
if [ ${#missing[@]} -gt 0 ]; then
  message="Horovod's build needs ${missing[*]}: install them with \`apt-get install $debian_packages\` (as root), then rerun"
  if [ "$mode" = "--if-possible" ]; then
    echo "note: Horovod (runner.py --MPI) is not installed. $message; the MPI tests skip meanwhile." >&2
    exit 0
  fi
  echo "error: $message." >&2
  exit 1
fi

tf_version=$("$python" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null) || {
  echo "error: $python has no TensorFlow: install the project first (make)." >&2; exit 1; }
python_tag=$("$python" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
patch_hash=$(cat "$here"/*.patch | sha256sum | cut -c1-12)
cache=${AGGREGATHOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aggregathor}/wheels/horovod-$version-tf$tf_version-$python_tag-$patch_hash
wheel=$(ls "$cache"/horovod-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "Building Horovod $version with MPI for TensorFlow $tf_version (about 2 minutes on 2 cores)..." >&2
  "$python" -m pip download --quiet --no-deps --no-binary :all: "horovod==$version" -d "$work"
  echo "$sha256  $work/horovod-$version.tar.gz" | sha256sum --check --quiet
  tar -xzf "$work/horovod-$version.tar.gz" -C "$work"
  for patch in "$here"/*.patch; do
    patch --quiet --directory "$work/horovod-$version" --strip 1 < "$patch"
  done
  "$python" -m pip install --quiet cloudpickle psutil pyyaml packaging setuptools wheel
  mkdir -p "$cache"
  # MPI collectives on the CPU; no Gloo, PyTorch nor MXNet: mpirun starts the ranks.
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 \
    HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=MPI MAKEFLAGS="-j$(nproc)" \
    "$python" -m pip wheel --quiet --no-build-isolation --no-deps -w "$work/wheel" "$work/horovod-$version"
  mv "$work"/wheel/horovod-*.whl "$cache"/
  wheel=$(ls "$cache"/horovod-*.whl | head -n 1)
fi
"$python" -m pip install --quiet --no-deps "$wheel"
"$python" -m pip install --quiet cloudpickle psutil pyyaml packaging
"$python" -c "import horovod.tensorflow as hvd, sys; sys.exit(0 if hvd.mpi_built() else 1)" || {
  echo "error: Horovod installed from $wheel but was built without MPI: delete that wheel and rerun." >&2; exit 1; }
echo "Horovod $version with MPI installed (wheel: $wheel)" >&2
