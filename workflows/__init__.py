"""Deterministic workflow code: no I/O here, only orchestration of activities.

`ModelWorkflow` (one per model resource) plans placement and fans out one `NodeWorkflow` child per
(model, node), each of which runs download -> verify -> activate -> parse -> label on the node's
own task queue.
"""
