"""Tests of `strategies.cluster.credentials`: one identity per task, private keys kept private."""

from __future__ import annotations

import stat

import pytest
from cryptography import x509

from strategies.cluster import credentials


def test_one_certificate_per_task_naming_it_alone(tmp_path):
  credentials.make_credentials(tmp_path, nb_workers=3)
  for identity in ("ps", "worker-0", "worker-1", "worker-2"):
    cert = x509.load_pem_x509_certificate((tmp_path / f"{identity}.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == [f"{identity}.aggregathor"]
    assert stat.S_IMODE((tmp_path / f"{identity}-key.pem").stat().st_mode) == 0o600
  assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
  assert not (tmp_path / "worker-3.pem").exists()


def test_existing_credentials_are_not_overwritten(tmp_path):
  credentials.make_credentials(tmp_path, nb_workers=1)
  with pytest.raises(ValueError, match="already holds credentials"):
    credentials.make_credentials(tmp_path, nb_workers=1)


def test_missing_or_open_credentials_say_what_to_do(tmp_path):
  with pytest.raises(ValueError, match="missing credentials .*deploy.py --cluster JSON --make-credentials"):
    credentials.channel_credentials(tmp_path)
  credentials.make_credentials(tmp_path, nb_workers=1)
  (tmp_path / "worker-0-key.pem").chmod(0o644)
  with pytest.raises(ValueError, match="readable by others .*chmod 600"):
    credentials.server_credentials(tmp_path, 0)
