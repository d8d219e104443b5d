"""SSH to the cluster's hosts, through asyncssh, as `ssh` would reach them: the user's OpenSSH config, keys only.

Host, port, user and identity file come from the OpenSSH config (`~/.ssh/config`,
or the file given), as `ssh` reads them. Host keys are always checked against
the known-hosts files (`~/.ssh/known_hosts`, or the config's
`UserKnownHostsFile`): an unknown host is refused, not trusted on first use.
Only public-key authentication is tried: no password is asked, and no secret
goes on a command line. Every failure raises `SSHError`, naming the host and
saying what to do.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shlex
from typing import Sequence

import asyncssh

DEFAULT_CONFIG = os.path.expanduser("~/.ssh/config")


class SSHError(RuntimeError):
  """A host could not be reached, authenticated or commanded; the message names it and says what to do."""


def config_hosts(path: str) -> list[str]:
  """The non-wildcard-only `Host` patterns of an OpenSSH config file."""
  patterns = []
  with open(path, encoding="utf-8") as handle:
    for line in handle:
      words = line.strip().split()
      if len(words) >= 2 and words[0].lower() == "host":
        patterns += [word for word in words[1:] if word not in ("*", "!*")]
  return patterns


def check_in_config(hosts: Sequence[str], path: str) -> None:
  """Every host must match a `Host` block of the given config (other than `Host *`): else a typo goes to port 22."""
  patterns = config_hosts(path)
  missing = [host for host in hosts
             if not any(fnmatch.fnmatchcase(host, p) for p in patterns if not p.startswith("!"))]
  if missing:
    raise SSHError(f"host(s) {', '.join(missing)} of the cluster have no Host block in the SSH config {path}: add "
                   f"one for each (HostName, Port, User, IdentityFile), as for ssh")


class Host:
  """One SSH connection to one host, opened by `connect`."""

  def __init__(self, name: str, config: str | None, timeout: float = 15.0):
    self.name = name
    self.config = config
    self.timeout = timeout
    self._connection: asyncssh.SSHClientConnection | None = None

  async def connect(self) -> "Host":
    options = {"config": [self.config]} if self.config and os.path.exists(self.config) else {}
    try:
      self._connection = await asyncio.wait_for(
          asyncssh.connect(self.name, preferred_auth="publickey", agent_path=None, **options), self.timeout)
    except asyncio.TimeoutError as error:
      raise SSHError(f"host {self.name}: no SSH answer within {self.timeout:g} s: is it up, and is its SSH port "
                     "right in the SSH config?") from error
    except asyncssh.HostKeyNotVerifiable as error:
      raise SSHError(f"host {self.name}: its host key is not in the known hosts ({error.reason}): check the key's "
                     f"fingerprint, then add it (ssh-keyscan, or ssh once by hand)") from error
    except asyncssh.PermissionDenied as error:
      raise SSHError(f"host {self.name}: the SSH key was refused ({error.reason}): check the IdentityFile of its "
                     "Host block and the host's authorized_keys") from error
    except (OSError, asyncssh.Error) as error:
      reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
      raise SSHError(f"host {self.name}: cannot connect over SSH ({reason})") from error
    return self

  async def run(self, command: str, check: bool = True, timeout: float = 60.0) -> asyncssh.SSHCompletedProcess:
    """Runs a shell command on the host; with `check`, a non-zero exit is an `SSHError` with its output."""
    try:
      result = await asyncio.wait_for(self._connection.run(command, check=False), timeout)
    except asyncio.TimeoutError as error:
      raise SSHError(f"host {self.name}: a command did not finish within {timeout:g} s") from error
    except (OSError, asyncssh.Error) as error:
      raise SSHError(f"host {self.name}: the SSH connection failed ({error})") from error
    if check and result.exit_status != 0:
      output = (str(result.stderr or "") + str(result.stdout or "")).strip()[-1500:]
      raise SSHError(f"host {self.name}: exit status {result.exit_status}: {output}")
    return result

  async def put(self, files: dict[str, str]) -> None:
    """Copies local files to remote paths (local -> remote), each with its local file's mode bits."""
    try:
      async with self._connection.start_sftp_client() as sftp:
        for local, remote in files.items():
          await sftp.put(local, remote, preserve=False)
          await sftp.chmod(remote, os.stat(local).st_mode & 0o777)
    except (OSError, asyncssh.Error) as error:
      raise SSHError(f"host {self.name}: copying files failed ({error}); the files go over SFTP: is its sshd's "
                     "'Subsystem sftp' on?") from error

  async def get(self, remote: str, local: str) -> None:
    try:
      async with self._connection.start_sftp_client() as sftp:
        await sftp.get(remote, local)
    except (OSError, asyncssh.Error) as error:
      raise SSHError(f"host {self.name}: fetching {remote} failed ({error})") from error

  def close(self) -> None:
    if self._connection is not None:
      self._connection.close()


def quote(*words: str) -> str:
  return " ".join(shlex.quote(word) for word in words)
