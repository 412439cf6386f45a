"""ticketsync: two-way sync between a local SQL ticket mirror and helpdesk vendors."""

__version__ = "0.1.0"
