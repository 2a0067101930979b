"""The one-machine mode (`modelferry dev`): a real Temporal dev server, the embedded Kubernetes API
server, the watcher, the control worker and a static node worker, all on 127.0.0.1.

This is a substitute for a cluster on one machine and in tests, never the production path."""
