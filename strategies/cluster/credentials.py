"""Per-task certificates for the cluster's mutual TLS: one CA, the parameter server's, and one per worker.

    make_credentials("creds/", nb_workers=4)   # ca.pem, ca-key.pem, ps.pem, ps-key.pem, worker-<i>.pem, ...

Each worker's certificate names that worker alone (DNS name `worker-<i>.aggregathor`),
and the parameter server dials worker i expecting exactly that name: a task holding
another worker's certificate cannot stand in for it. Workers accept only a client
whose certificate names the parameter server. Keys are written with mode 0600.
Keep `ca-key.pem` off the cluster: it makes new identities.
"""

from __future__ import annotations

import datetime
import os
import pathlib

DOMAIN = "aggregathor"
PS_IDENTITY = "ps"
VALIDITY = datetime.timedelta(days=825)


def worker_identity(index: int) -> str:
  return f"worker-{index}"


def dns_name(identity: str) -> str:
  """The DNS name a certificate of `identity` holds, and that TLS checks."""
  return f"{identity}.{DOMAIN}"


def make_credentials(directory: str | os.PathLike, nb_workers: int, overwrite: bool = False) -> pathlib.Path:
  """Writes a new CA and the certificates of the parameter server and of workers 0 to nb_workers-1."""
  from cryptography import x509  # pylint: disable=g-import-not-at-top
  from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=g-import-not-at-top
  from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=g-import-not-at-top
  from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # pylint: disable=g-import-not-at-top

  if isinstance(nb_workers, bool) or not isinstance(nb_workers, int) or nb_workers < 1:
    raise ValueError(f"expected nb_workers >= 1 as an int, got {nb_workers!r}")
  directory = pathlib.Path(directory)
  if (directory / "ca.pem").exists() and not overwrite:
    raise ValueError(f"{directory} already holds credentials (ca.pem): pick another directory, or remove them "
                     "first (every task then needs its new files)")
  directory.mkdir(parents=True, exist_ok=True)
  now = datetime.datetime.now(datetime.timezone.utc)

  def write_key(key, name: str) -> None:
    path = directory / name
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
      handle.write(data)
    os.chmod(path, 0o600)

  def certificate(subject: str, key, issuer_name, issuer_key, is_ca: bool, usages=()):
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True))
    if is_ca:
      builder = builder.add_extension(x509.KeyUsage(
          digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
          key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
          decipher_only=False), critical=True)
    else:
      builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name(subject))]), critical=False)
      builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())

  ca_key = ec.generate_private_key(ec.SECP256R1())
  ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{DOMAIN} cluster CA")])
  ca = certificate(f"{DOMAIN} cluster CA", ca_key, ca_name, ca_key, is_ca=True)
  (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
  write_key(ca_key, "ca-key.pem")
  both = (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH)
  for identity in [PS_IDENTITY] + [worker_identity(i) for i in range(nb_workers)]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(identity, key, ca_name, ca_key, is_ca=False, usages=both)
    (directory / f"{identity}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key, f"{identity}-key.pem")
  return directory


def read_identity(directory: str | os.PathLike, identity: str) -> tuple[bytes, bytes, bytes]:
  """(CA certificate, private key, certificate) of `identity`, with an error saying how to make them."""
  directory = pathlib.Path(directory)
  files = [directory / "ca.pem", directory / f"{identity}-key.pem", directory / f"{identity}.pem"]
  missing = [str(path) for path in files if not path.is_file()]
  if missing:
    raise ValueError(f"missing credentials {', '.join(missing)}: create them with `deploy.py --cluster JSON "
                     f"--make-credentials {directory}` and copy each task its own files, or pass --credentials DIR")
  key_mode = files[1].stat().st_mode & 0o077
  if key_mode:
    raise ValueError(f"{files[1]} is readable by others (mode {oct(files[1].stat().st_mode & 0o777)}): "
                     f"run chmod 600 {files[1]}")
  return tuple(path.read_bytes() for path in files)


def channel_credentials(directory: str | os.PathLike):
  """The parameter server's side: its client certificate, and the CA that the workers' certificates must chain to."""
  import grpc  # pylint: disable=g-import-not-at-top
  ca, key, cert = read_identity(directory, PS_IDENTITY)
  return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def server_credentials(directory: str | os.PathLike, index: int):
  """Worker `index`'s side: its certificate, and a client certificate required of every caller."""
  import grpc  # pylint: disable=g-import-not-at-top
  ca, key, cert = read_identity(directory, worker_identity(index))
  return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
