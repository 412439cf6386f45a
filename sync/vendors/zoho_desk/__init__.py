"""Zoho Desk: the vendor's declaration (the adapter is ``sync.vendors.zoho_desk.adapter``)."""

from __future__ import annotations

from sync.vendors.spec import Credential, VendorSpec
from sync.vendors.zoho_desk.options import validate_options

SPEC = VendorSpec(
    vendor="zoho_desk",
    adapter="sync.vendors.zoho_desk.adapter:ZohoDeskAdapter",
    credentials=(
        Credential("client_id", required=True, secret=False),
        Credential("client_secret", required=True),
        Credential("refresh_token", required=True),
        Credential("org_id", required=True, secret=False),
        # The OAuth host of the account's data centre; tests point it at 127.0.0.1.
        Credential("accounts_url", secret=False, url=True),
        # The last segment of the webhook URL Zoho posts to (docs/architecture.md §8.6).
        Credential("webhook_secret", in_path=True),
    ),
    check_options=validate_options,
)
