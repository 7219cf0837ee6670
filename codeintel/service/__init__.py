"""HTTP service pieces that do not need Ray: problem details, session scopes, readiness, metrics."""
