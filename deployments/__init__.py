"""Ray Serve deployments: thin wrappers that hold state and call into ``codeintel``.

The deployments and the graph builder land with the Serve graph issue.
"""
