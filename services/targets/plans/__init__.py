"""Target plans: a tenant's yearly targets."""
