"""Sirportly: the vendor's declaration (the adapter is ``sync.vendors.sirportly.adapter``)."""

from __future__ import annotations

from sync.vendors.sirportly.options import validate_options
from sync.vendors.spec import Credential, VendorSpec

SPEC = VendorSpec(
    vendor="sirportly",
    adapter="sync.vendors.sirportly.adapter:SirportlyAdapter",
    credentials=(Credential("token", required=True), Credential("secret", required=True)),
    check_options=validate_options,
)
