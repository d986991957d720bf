"""The targets service."""
