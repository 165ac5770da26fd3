"""Evidence: the log's signing key and the bundles an auditor verifies offline."""

from __future__ import annotations

from chronoml.evidence.bundle import (
    BatchProof,
    Bundle,
    BundleError,
    BundleItem,
    StoredInputs,
    prove_item,
    write_bundle,
)
from chronoml.evidence.keys import (
    KeyFileError,
    SigningKey,
    create_key_file,
    ensure_key_file,
    generate,
    load_key_file,
)

__all__ = [
    "BatchProof",
    "Bundle",
    "BundleError",
    "BundleItem",
    "KeyFileError",
    "SigningKey",
    "StoredInputs",
    "create_key_file",
    "ensure_key_file",
    "generate",
    "load_key_file",
    "prove_item",
    "write_bundle",
]
