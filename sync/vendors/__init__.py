"""Vendor adapters, one package per vendor; ``sync.vendors.registry`` finds them lazily.

Importing this package imports no vendor: ``registry.spec(vendor)`` loads a vendor's
declaration (``sync.vendors.spec.VendorSpec``), ``sync.vendors.base.adapter_class`` its adapter.
"""
