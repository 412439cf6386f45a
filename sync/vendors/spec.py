"""What a vendor package declares about itself, readable without importing its adapter.

A vendor package's ``__init__`` holds one ``VendorSpec``: its credentials (each marked
secret or not), its options check and the ``"module:Class"`` of its adapter, whose
``capabilities`` say what the vendor's API can do. ``sync.vendors.registry`` finds the
specs lazily, so validating a config imports no adapter, HTTP client or vendor wire code.

This module imports nothing from ``sync`` beyond the standard library: the config and the
adapters both depend on it, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Every canonical field of the mirror's ``tickets`` table that a connection may sync.
SYNC_FIELDS = (
    "title",
    "description",
    "status",
    "priority",
    "queue",
    "assignee",
    "requester_email",
    "due_at",
)

#: The shortest secret accepted in a URL path (``Credential.in_path``): 128 bits of base64.
PATH_SECRET_MIN = 22

#: ``options`` -> every problem, each as ``options.KEY: message`` (``sync.vendors.options``).
OptionsCheck = Callable[[Mapping[str, Any]], list[str]]
#: The credential names given (``NAME_file`` counted as ``NAME``) -> (key, problem) pairs.
CredentialRule = Callable[[frozenset[str]], list[tuple[str, str]]]


@dataclass(frozen=True)
class Credential:
    """One key of ``connections.NAME.credentials``.

    ``secret``: a password or token; such a value written inline in a file readable by
    others is warned about. An identifier (an account e-mail, a client id, an org id) is
    not a secret, though it is still kept out of logs unless ``url``. ``url``: an address,
    checked like ``base_url`` and never redacted. ``in_path``: the value is a path segment
    of a URL we serve (a webhook secret): at least ``PATH_SECRET_MIN`` URL-safe characters.
    """

    name: str
    required: bool = False
    secret: bool = True
    url: bool = False
    in_path: bool = False


@dataclass(frozen=True)
class VendorSpec:
    """A vendor's declaration: its id, credentials, options check and adapter class.

    ``credential_rule`` states what the ``required`` flags cannot (Kapture: ``token``
    unless all three per-endpoint tokens are given). ``test_only`` vendors are accepted
    in a config but named in no message or example.
    """

    vendor: str
    adapter: str
    credentials: tuple[Credential, ...]
    check_options: OptionsCheck
    credential_rule: CredentialRule | None = None
    test_only: bool = False

    def credential(self, name: str) -> Credential | None:
        """The declaration of credential ``name``, or None when the vendor has none."""
        return next((c for c in self.credentials if c.name == name), None)
