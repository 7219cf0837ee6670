"""Ray Serve deployments: thin wrappers that hold state and call into ``codeintel``.

``deployments.app:build_app`` composes them behind one FastAPI ingress.
"""
