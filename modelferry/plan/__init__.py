"""`modelferry plan`'s pure parts: whether a model fits a node, and the plan as text or JSON.

The command (`modelferry.commands.plan`) reads the nodes and the source; these modules only
decide and render, so they are table-tested without a cluster or a network.
"""
