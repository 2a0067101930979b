"""Activities: all I/O (storage, hashing, parsing, Kubernetes writes). Workflows call these by
name; each module is one family (download, verify, parse, label/status, node worker)."""
