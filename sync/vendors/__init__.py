"""Vendor adapters. Importing this package registers every adapter (see ``base.register``)."""

from sync.vendors import memory, zoho_desk  # noqa: F401
