"""RFC 3161 timestamps of signed checkpoints, from an authority the admin configured.

A checkpoint proves what the log held, signed by the store's own key; a
timestamp from an outside authority proves *when*: the authority signs the
SHA-256 of the signed note (the exact bytes published) with its time, and
whoever trusts that authority's certificate can check it without trusting
the store's clock or its key. ``rfc3161-client`` builds the request and
verifies the answer (CMS signature, certificate chain, the timeStamping
extended key usage, the nonce and the message imprint).

The response (a DER ``TimeStampResp``) is kept beside its checkpoint: in the
database and as ``<checkpoint>.tsr`` next to each published note.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    TimeStampTokenInfo,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from chronoml.auth import AuthError, SecretResolver, redact
from chronoml.auth.policy import deliverable_url
from chronoml.store import Store
from chronoml.store import checkpoints as SC

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_REPLY_BYTES = 1 << 20


class TimestampError(ValueError):
    """A timestamp that could not be had or does not verify; ``field`` names the input."""

    def __init__(self, message: str, field: str = "tsa_url") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def imprint(data: bytes) -> bytes:
    """What the authority signs for ``data``: its SHA-256."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class Authority:
    """A timestamp authority reached over HTTP(S).

    ``url`` is kept as configured (credentials as ``${ENV}`` references,
    resolved at each request). The server checks the destination like a
    webhook's (``allow_hosts``); the CLI, run by the user against a URL
    they typed, passes ``check_egress=False``.
    """

    url: str
    allow_hosts: tuple[str, ...] = ()
    secrets: SecretResolver = field(default_factory=SecretResolver)
    timeout_s: float = 10.0
    check_egress: bool = True

    @property
    def shown(self) -> str:
        """The URL fit for logs and errors."""
        return redact(self.url)

    def stamp(self, data: bytes, client: httpx.Client | None = None) -> bytes:
        """Ask for a timestamp of ``data``; the DER response, checked to answer this request."""
        request = (
            TimestampRequestBuilder()
            .data(data)
            .hash_algorithm(HashAlgorithm.SHA256)
            .nonce(nonce=True)
            .cert_request(cert_request=True)
            .build()
        )
        try:
            if self.check_egress:
                url = deliverable_url(self.url, self.allow_hosts, self.secrets)
            else:
                url = self.secrets.resolve_url(self.url, "tsa_url")
        except AuthError as exc:
            raise TimestampError(f"refused: {exc.message}") from None
        headers = {"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE, "User-Agent": "chronoml"}
        try:
            if client is None:
                with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as c:
                    der = self._post(c, url, request.as_bytes(), headers)
            else:
                der = self._post(client, url, request.as_bytes(), headers)
        except httpx.HTTPError as exc:
            raise TimestampError(f"{self.shown}: {type(exc).__name__}: {exc}") from None
        tsr = _decode(der)
        if PKIStatus(tsr.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
            raise TimestampError(f"{self.shown} refused the request (status {tsr.status})")
        info = _info(tsr)
        if info.message_imprint.message != imprint(data):
            raise TimestampError(f"{self.shown} timestamped other data than was asked")
        if info.nonce != request.nonce:
            raise TimestampError(f"{self.shown} answered with another request's nonce")
        return der

    def _post(self, client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> bytes:
        with client.stream("POST", url, content=body, headers=headers) as resp:
            if resp.status_code != 200:
                raise TimestampError(f"{self.shown} answered HTTP {resp.status_code}")
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise TimestampError(f"{self.shown} answered over {MAX_REPLY_BYTES} bytes")
                chunks.append(chunk)
        return b"".join(chunks)


def _decode(der: bytes) -> TimeStampResponse:
    try:
        return decode_timestamp_response(der)
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 timestamp response: {exc}", "timestamp") from None


def _info(tsr: TimeStampResponse) -> TimeStampTokenInfo:
    try:
        return tsr.tst_info  # parsed lazily: a missing or malformed token fails here
    except ValueError as exc:
        raise TimestampError(f"the timestamp response has no token: {exc}", "timestamp") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """The PEM certificates in ``path`` (``--tsa-cert``): the authority's root, and its
    own and intermediate certificates if the file has them."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TimestampError(f"cannot read {path}: {exc.strerror}", "tsa_cert") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TimestampError(f"{path} holds no PEM certificate", "tsa_cert") from None
    if not any(c.subject == c.issuer for c in certs):
        raise TimestampError(
            f"{path} has no root certificate (self-signed): give the authority's chain "
            "up to its root",
            "tsa_cert",
        )
    return certs


def _is_timestamping(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in eku


@dataclass(frozen=True)
class Stamp:
    """A timestamp that verified: when the authority says the data existed."""

    time: datetime
    authority: str  # the signing certificate's subject
    chained: bool  # False: only the imprint was checked (no certificate given)

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"time": self.time.isoformat(), "authority": self.authority, "chained": self.chained}


def verify(der: bytes, data: bytes, certs: Sequence[x509.Certificate] = ()) -> Stamp:
    """Check the timestamp ``der`` of ``data``: its imprint always; with ``certs`` (the
    authority's chain, ``--tsa-cert``) also its signature and certificate chain."""
    tsr = _decode(der)
    if PKIStatus(tsr.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise TimestampError(f"the authority refused it (status {tsr.status})", "timestamp")
    info = _info(tsr)
    if info.message_imprint.message != _digest_as(info.message_imprint.hash_algorithm, data):
        raise TimestampError(
            "its message imprint is not the hash of the checkpoint: it timestamps other data",
            "timestamp",
        )
    authority = ""
    if certs:
        builder = VerifierBuilder()
        for c in certs:
            if c.subject == c.issuer:
                builder = builder.add_root_certificate(c)
            elif _is_timestamping(c):
                builder = builder.tsa_certificate(c)
            else:
                builder = builder.add_intermediate_certificate(c)
        try:
            builder.build().verify_message(tsr, data)
        except (VerificationError, ValueError) as exc:
            raise TimestampError(
                f"it does not verify with the authority's certificate: {str(exc)[:300]}",
                "timestamp",
            ) from None
    for raw in tsr.signed_data.certificates:
        cert = x509.load_der_x509_certificate(raw)
        if _is_timestamping(cert):
            authority = cert.subject.rfc4514_string()
    return Stamp(info.gen_time, authority, bool(certs))


def _digest_as(oid: x509.ObjectIdentifier, data: bytes) -> bytes:
    names = {
        "2.16.840.1.101.3.4.2.1": "sha256",
        "2.16.840.1.101.3.4.2.2": "sha384",
        "2.16.840.1.101.3.4.2.3": "sha512",
    }
    name = names.get(oid.dotted_string)
    if name is None:
        raise TimestampError(f"unsupported imprint hash {oid.dotted_string}", "timestamp")
    return hashlib.new(name, data).digest()


def beside(note_path: Path) -> Path:
    """Where a published checkpoint's timestamp lives: the same name with ``.tsr``."""
    return note_path.with_suffix(".tsr")


@dataclass
class TimestampReport:
    """The timestamps ``audit verify`` checked, and those that failed (what, why)."""

    checked: int = 0
    chained: bool = False  # signatures and chains checked too (a certificate was given)
    stamps: list[tuple[str, Stamp]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(
        self, what: str, der: bytes | None, data: bytes, certs: Sequence[x509.Certificate]
    ) -> None:
        """Check one timestamp (``None``: there is none, which fails when certs were given)."""
        if der is None:
            if certs:
                self.problems.append((what, "it has no timestamp, and --tsa-cert asks for one"))
            return
        self.checked += 1
        try:
            self.stamps.append((what, verify(der, data, certs)))
        except TimestampError as exc:
            self.problems.append((what, exc.message))

    def to_dict(self) -> dict[str, object]:
        """JSON form (the ``timestamps`` object of ``audit verify --json``)."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "chained": self.chained,
            "stamps": [{"of": w, **s.to_dict()} for w, s in self.stamps],
            "problems": [{"what": w, "reason": r} for w, r in self.problems],
        }


def check_stored(
    store: Store, certs: Sequence[x509.Certificate] = (), given: Path | None = None
) -> TimestampReport:
    """Check the timestamps kept beside the store's checkpoints, and the one beside the
    checkpoint file ``given`` (``<file>.tsr``). Each must timestamp its note's exact bytes;
    with ``certs`` each must also be signed by that authority, and each must exist."""
    report = TimestampReport(chained=bool(certs))
    with store.read() as conn:
        notes = SC.checkpoints_in(conn)
        stamps = SC.timestamps_in(conn)
    for cid, _size, _root, _at, text in notes:
        found = stamps.pop(cid, None)
        # checkpoints from before an authority was configured have none: fine
        if found is not None:
            report.check(f"timestamp of stored checkpoint #{cid}", found[1], text.encode(), certs)
    for cid in sorted(stamps):
        report.problems.append((f"timestamp #{cid}", "its checkpoint is not in the store"))
    if given is not None:
        tsr = beside(given)
        der = tsr.read_bytes() if tsr.exists() else None
        report.check(f"timestamp {tsr}", der, given.read_bytes(), certs)
    return report


__all__ = [
    "Authority",
    "Stamp",
    "TimestampError",
    "TimestampReport",
    "beside",
    "check_stored",
    "imprint",
    "load_certificates",
    "verify",
]
