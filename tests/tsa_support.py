"""A real RFC 3161 timestamp authority and a webhook receiver, on loopback, for the tests.

The authority has its own CA and a TSA certificate (ECDSA P-256, extended key
usage timeStamping, critical) made with ``cryptography``; it answers DER
``TimeStampReq`` bodies with a ``TimeStampResp`` whose token is a CMS
SignedData over a TSTInfo (RFC 3161 section 2.4.2, RFC 5652), with the
contentType, messageDigest and signingCertificateV2 attributes. The DER is
written by the small encoder below: ``cryptography`` signs, and its pkcs7
builder cannot carry a TSTInfo as content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --- DER ------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(parts)))  # DER: a SET OF in order of its encodings


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def oid(dotted: str) -> bytes:
    a, b, *rest = (int(x) for x in dotted.split("."))
    out = bytearray([40 * a + b])
    for v in rest:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def generalized_time(t: dt.datetime) -> bytes:
    return tlv(0x18, t.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode())


def read_tlv(data: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(tag, content, the whole element, what follows it)."""
    tag, first = data[0], data[1]
    if first < 0x80:
        start, n = 2, first
    else:
        k = first & 0x7F
        start, n = 2 + k, int.from_bytes(data[2 : 2 + k], "big")
    return tag, data[start : start + n], data[: start + n], data[start + n :]


SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
SIGNED_DATA = "1.2.840.113549.1.7.2"
TST_INFO = "1.2.840.113549.1.9.16.1.4"
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
POLICY = "1.3.6.1.4.1.99999.1"


# --- the authority --------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class Authority:
    """A timestamp authority: its CA, its signing certificate, and what it was asked."""

    name: str = "chronoml test TSA"
    requests: list[bytes] = field(default_factory=list)
    tamper: bool = False  # answer with the imprint of other data

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert(f"{self.name} root", self.ca_key, f"{self.name} root", self.ca_key, ca=True)
        self.cert = _cert(self.name, self.key, f"{self.name} root", self.ca_key, ca=False)
        self.serial = 0

    def root_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    def chain_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM) + self.root_pem()

    def respond(self, request: bytes) -> bytes:
        """The DER TimeStampResp answering one DER TimeStampReq."""
        _, body, _, _ = read_tlv(request)
        _, _, _version, rest = read_tlv(body)
        _, _, imprint, rest = read_tlv(rest)
        nonce = b""
        while rest:
            tag, _, whole, rest = read_tlv(rest)
            if tag == 0x02:
                nonce = whole
        if self.tamper:
            imprint = seq(seq(oid(SHA256)), octets(hashlib.sha256(b"other").digest()))
        self.serial += 1
        info = seq(
            integer(1),
            oid(POLICY),
            imprint,
            integer(self.serial),
            generalized_time(dt.datetime.now(dt.UTC)),
            nonce,
        )
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        issuer_serial = seq(self.ca.subject.public_bytes(), integer(self.cert.serial_number))
        attrs = set_of(
            seq(oid(CONTENT_TYPE), set_of(oid(TST_INFO))),
            seq(oid(MESSAGE_DIGEST), set_of(octets(hashlib.sha256(info).digest()))),
            seq(
                oid(SIGNING_CERTIFICATE_V2),
                set_of(seq(seq(seq(octets(hashlib.sha256(cert_der).digest()))))),
            ),
        )
        signature = self.key.sign(attrs, ec.ECDSA(hashes.SHA256()))
        signer = seq(
            integer(1),
            issuer_serial,
            seq(oid(SHA256)),
            tlv(0xA0, read_tlv(attrs)[1]),  # [0] IMPLICIT: the same SET, retagged
            seq(oid(ECDSA_SHA256)),
            octets(signature),
        )
        signed_data = seq(
            integer(3),
            set_of(seq(oid(SHA256))),
            seq(oid(TST_INFO), tlv(0xA0, octets(info))),
            tlv(0xA0, cert_der),
            set_of(signer),
        )
        token = seq(oid(SIGNED_DATA), tlv(0xA0, signed_data))
        return seq(seq(integer(0)), token)


@contextmanager
def serve_authority(authority: Authority) -> Iterator[str]:
    """Serve ``authority`` over HTTP on loopback; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            authority.requests.append(body)
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_response(415)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answer = authority.respond(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    with _served(Handler) as port:
        yield f"http://127.0.0.1:{port}/tsa"


# --- a webhook receiver -----------------------------------------------------------


@dataclass
class Receiver:
    """Records each POST (headers, path, body); answers 200."""

    requests: list[tuple[dict[str, str], str, bytes]] = field(default_factory=list)


@contextmanager
def serve_receiver(receiver: Receiver, port: int = 0) -> Iterator[int]:
    """Serve ``receiver`` on loopback (on ``port``, or any free one); yields the port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.requests.append((headers, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    with _served(Handler, port) as p:
        yield p


@contextmanager
def _served(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
