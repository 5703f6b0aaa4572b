"""The application layer: one method per operation; the only place that checks scopes and
grants, opens transactions, enforces limits and writes audit."""
