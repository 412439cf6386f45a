"""ProProfs Help Desk: the vendor's declaration (its adapter: ``proprofs.adapter``)."""

from __future__ import annotations

from sync.vendors.proprofs.options import validate_options
from sync.vendors.spec import Credential, VendorSpec

SPEC = VendorSpec(
    vendor="proprofs",
    adapter="sync.vendors.proprofs.adapter:ProProfsAdapter",
    credentials=(
        Credential("account_email", required=True, secret=False),
        Credential("token", required=True),
    ),
    check_options=validate_options,
)
