"""The four Lodestar services; none imports another."""
