"""An embedded single-node Kubernetes API server: the one-machine and test stand-in for a cluster.

It speaks the real API over HTTP (discovery, CRUD with the real status codes, the three patch
formats, the status subresource, finalizers, watches with resume and 410 Gone, Tables for
kubectl), so the product, the official `kubernetes` client and `kubectl` use it exactly as they
use a real cluster. It is never the production path. See docs/apiserver.md.
"""

from .server import EmbeddedApiServer

__all__ = ["EmbeddedApiServer"]
