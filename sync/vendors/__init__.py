"""Vendor adapters. Importing this package registers every adapter (see ``base.register``)."""

from sync.vendors import memory  # noqa: F401
