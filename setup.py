"""AggregaThor for TensorFlow 2: Byzantine-resilient distributed training as a tf.distribute plugin."""

from setuptools import find_packages, setup

setup(
    name="aggregathor",
    version="0.1.0",
    description="Byzantine-resilient distributed training for TensorFlow 2 (tf.distribute plugin)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["aggregathor", "aggregathor.*", "strategies", "strategies.*",
                                    "experiments", "experiments.*"]),
    py_modules=["runner", "study", "reproduce"],
    python_requires=">=3.10",
    install_requires=[
        "tensorflow-cpu==2.21.*; platform_machine=='x86_64' or platform_machine=='AMD64'",
        "tensorflow==2.21.*; platform_machine!='x86_64' and platform_machine!='AMD64'",
        "keras>=3.15,<4",
        "numpy>=1.26",
        "absl-py>=2.1",
        "tensorboard>=2.21",
        "scikit-learn>=1.5",
        "grpcio>=1.60",
        "cryptography>=42",
        "asyncssh>=2.14",
        "matplotlib>=3.8",
    ],
    extras_require={
        "tfds": ["tensorflow-datasets>=4.9", "importlib_resources"],
        # runner.py --MPI: Horovod's collectives. 0.28.1 does not build against TF 2.21 as released: install it with
        # `make mpi` (patches/horovod/install.sh), whose patched wheel then satisfies this.
        "mpi": ["horovod==0.28.1", "cloudpickle", "psutil", "pyyaml", "packaging"],
        "test": ["pytest>=8", "tensorflow-datasets>=4.9", "importlib_resources", "hypothesis>=6", "atheris>=2.3"],
    },
    entry_points={"console_scripts": ["aggregathor-runner=runner:main"]},
)
