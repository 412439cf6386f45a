"""Kapture CRM: the vendor's declaration (the adapter is ``sync.vendors.kapture.adapter``)."""

from __future__ import annotations

from sync.vendors.kapture.options import validate_options
from sync.vendors.spec import Credential, VendorSpec

#: Each overrides ``token`` for one API definition (Kapture issues one key per definition).
PER_ENDPOINT = ("create_token", "update_token", "read_token")


def _token_rule(given: frozenset[str]) -> list[tuple[str, str]]:
    if "token" in given or given >= set(PER_ENDPOINT):
        return []
    return [("token", "required (unless create_token, update_token and read_token are all given)")]


SPEC = VendorSpec(
    vendor="kapture",
    adapter="sync.vendors.kapture.adapter:KaptureAdapter",
    credentials=(Credential("token"), *(Credential(name) for name in PER_ENDPOINT)),
    check_options=validate_options,
    credential_rule=_token_rule,
)
