"""deploy.py --deploy/--status/--logs/--stop over a real sshd on 127.0.0.1, with a throwaway key pair and host key.

Without /usr/sbin/sshd (`apt-get install openssh-server`, which .ci/run does) these tests are skipped, unless
AGGREGATHOR_REQUIRE_SSHD=1 (as .ci/run sets it) makes that a failure.
"""

from __future__ import annotations

import getpass
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


class SSHServer:
  """A real sshd on 127.0.0.1 and what a client needs to use it: a key, a known_hosts file and an SSH config."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "id_ed25519", "other_key"):
      subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "id_ed25519.pub").read_text())
    self.port = free_port()
    (root / "sshd_config").write_text("\n".join([
        f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}",
        f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no", "MaxStartups 50", "MaxSessions 50",
        "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege-separation directory
    self.log = open(root / "sshd.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
    self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=self.log,
                                    stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
      try:
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        break
      except OSError:
        assert self.process.poll() is None and time.monotonic() < deadline, (root / "sshd.log").read_text()
        time.sleep(0.1)
    host_key = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
    (root / "empty_known_hosts").write_text("")
    self.config = self.ssh_config()

  def ssh_config(self, name: str = "ssh_config", port: int | None = None, key: str = "id_ed25519",
                 known_hosts: str = "known_hosts") -> pathlib.Path:
    path = self.root / name
    path.write_text("\n".join([
        "Host 127.0.0.1", "  HostName 127.0.0.1", f"  Port {port or self.port}", f"  User {getpass.getuser()}",
        f"  IdentityFile {self.root / key}", f"  UserKnownHostsFile {self.root / known_hosts}", ""]))
    return path

  def stop(self) -> None:
    self.process.terminate()
    self.process.wait(timeout=10)
    self.log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
  if not os.path.exists(SSHD) or os.geteuid() != 0:
    message = "no sshd to run as root here (apt-get install openssh-server, as .ci/run does)"
    if os.environ.get("AGGREGATHOR_REQUIRE_SSHD", "") not in ("", "0"):
      pytest.fail(message + "; AGGREGATHOR_REQUIRE_SSHD is set, so this is a failure, not a skip")
    pytest.skip(message)
  server = SSHServer(tmp_path_factory.mktemp("sshd"))
  yield server
  server.stop()


def deploy(*args: str, cwd: pathlib.Path, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(REPO_ROOT / "deploy.py"), *args], cwd=cwd, env=ENVIRONMENT,
                        capture_output=True, text=True, timeout=timeout, check=False)


def states(output: str) -> list[str]:
  """The state column of deploy.py's table (task, host, state, detail)."""
  return [line.split()[2] for line in output.splitlines() if re.match(r"\w+:\d+\s", line)]


def remote_options(sshd: SSHServer, state: pathlib.Path, config: pathlib.Path | None = None) -> list[str]:
  return ["--ssh-config", str(config or sshd.config), "--remote-root", str(REPO_ROOT), "--remote-python",
          sys.executable, "--remote-dir", str(state)]


def test_deploy_train_status_logs_and_stop(sshd, make_cluster, shared_data):
  cluster = make_cluster(4)
  state = cluster.root / "remote-state"
  common = ["--cluster", str(cluster.spec_path), "--credentials", str(cluster.credentials),
            *remote_options(sshd, state)]
  started = deploy(*common, "--deploy", "--byz-workers", "1", "--attack", "little", "--nice", cwd=cluster.root)
  try:
    assert started.returncode == 0, started.stderr[-3000:]
    assert all(f"workers:{i} started on 127.0.0.1" in started.stderr for i in range(4))
    # Each task has its own credentials there, its key readable by its owner alone.
    deployed, = state.iterdir()  # the deployment's folder, named by the cluster's hash
    own = deployed / "credentials-workers-2"
    assert sorted(path.name for path in own.iterdir()) == ["ca.pem", "worker-2-key.pem", "worker-2.pem"]
    assert (own / "worker-2-key.pem").stat().st_mode & 0o777 == 0o600 and own.stat().st_mode & 0o777 == 0o700
    status = deploy(*common, "--status", cwd=cluster.root)
    assert status.returncode == 0 and states(status.stdout) == ["running"] * 4, status.stdout
    pids = [int(pid) for pid in re.findall(r"running\s+pid (\d+)", status.stdout)]
    assert len(pids) == 4 and all(os.getpriority(os.PRIO_PROCESS, pid) == 19 for pid in pids)  # --nice

    ps = cluster.start_ps("--experiment", "mnist", "--experiment-args", f"idx-dir:{shared_data / 'mnist'}",
                          "--aggregator", "median", "--nb-decl-byz-workers", "1", "--nb-real-byz-workers", "1",
                          "--max-steps", "300", "--evaluation-delta", "1000", "--evaluation-file", "eval.tsv")
    assert ps.wait(timeout=600) == 0, (cluster.root / "ps.log").read_text()[-3000:]
    (step, accuracy), = cluster.evaluations(cluster.root / "eval.tsv")
    assert step == 300 and accuracy > 0.85

    logs = deploy(*common, "--logs", str(cluster.root / "logs"), cwd=cluster.root)
    assert logs.returncode == 0, logs.stderr
    assert "Byzantine with little" in (cluster.root / "logs" / "workers-3.log").read_text()
    assert "serving on" in (cluster.root / "logs" / "workers-0.log").read_text()
  finally:
    stopped = deploy(*common, "--stop", cwd=cluster.root)
  assert stopped.returncode == 0 and states(stopped.stdout) == ["stopped"] * 4, stopped.stdout + stopped.stderr
  for pid in pids:
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in pathlib.Path(f"/proc/{pid}/status").read_text()
  assert states(deploy(*common, "--status", cwd=cluster.root).stdout) == ["stopped"] * 4


@pytest.mark.parametrize("problem", ["unreachable", "wrong key", "unknown host key", "not in the config"])
def test_ssh_problems_name_the_host(sshd, make_cluster, problem):
  cluster = make_cluster(2, name=problem.replace(" ", "-"))
  config = {"unreachable": lambda: sshd.ssh_config("closed", port=free_port()),
            "wrong key": lambda: sshd.ssh_config("wrong", key="other_key"),
            "unknown host key": lambda: sshd.ssh_config("unknown", known_hosts="empty_known_hosts"),
            "not in the config": lambda: sshd.ssh_config("other-host")}[problem]()
  if problem == "not in the config":
    config.write_text(config.read_text().replace("Host 127.0.0.1", "Host 127.0.0.9"))
  result = deploy("--cluster", str(cluster.spec_path), "--credentials", str(cluster.credentials), "--deploy",
                  *remote_options(sshd, cluster.root / "state", config), cwd=cluster.root, timeout=120)
  expected = {"unreachable": "host 127.0.0.1: cannot connect over SSH",
              "wrong key": "host 127.0.0.1: the SSH key was refused",
              "unknown host key": "host 127.0.0.1: its host key is not in the known hosts",
              "not in the config": "host(s) 127.0.0.1 of the cluster have no Host block in the SSH config"}[problem]
  assert result.returncode == 2 and expected in result.stderr, result.stderr[-3000:]


def test_a_port_in_use_names_the_task_and_the_others_are_stopped(sshd, make_cluster):
  cluster = make_cluster(2, name="port-in-use")
  holder = socket.socket()
  holder.bind(("127.0.0.1", cluster.ports[1]))
  holder.listen()
  state = cluster.root / "state"
  common = ["--cluster", str(cluster.spec_path), "--credentials", str(cluster.credentials),
            *remote_options(sshd, state)]
  try:
    result = deploy(*common, "--deploy", cwd=cluster.root)
  finally:
    holder.close()
  assert result.returncode == 2, result.stderr[-3000:]
  assert "workers:1 on 127.0.0.1" in result.stderr and "cannot listen on" in result.stderr, result.stderr[-3000:]
  assert "the 1 task(s) started were stopped" in result.stderr
  assert states(deploy(*common, "--status", cwd=cluster.root).stdout) == ["stopped"] * 2
