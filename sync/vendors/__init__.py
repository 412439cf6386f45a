"""Vendor adapters. Importing this package registers every adapter (see ``base.register``)."""

from sync.vendors import kapture, memory, proprofs, sirportly, zoho_desk  # noqa: F401
