"""What the Serve deployments hold, written without Ray: the index backends and their version
leases, reindex jobs, session scopes, readiness, problem details and metrics."""
