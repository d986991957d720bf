"""Code every Lodestar service needs and no service owns."""
