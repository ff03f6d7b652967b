"""Catalogue schema revisions."""
