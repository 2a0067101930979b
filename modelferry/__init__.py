"""modelferry: put large AI models onto Kubernetes nodes.

This package holds what the three layers (`watcher`, `workflows`, `activities`) share: resource
types, errors, names, settings and the pure logic (URIs, placement, metadata parsing). It imports
neither the Temporal SDK's worker machinery nor the Kubernetes client at import time.
"""

__version__ = "0.1.0"
