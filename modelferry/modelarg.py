"""The MODEL argument of the CLI's one-model commands (`status`, `history`, `redownload`, ...).

`cbm/NAME`, `bm/NAMESPACE/NAME` and `ftw/NAME`, or the kinds' long names (`clusterbasemodel/NAME`,
`basemodel/NAMESPACE/NAME`, `finetunedweight/NAME`, plurals too), case-insensitive in the kind.
Only a BaseModel has a namespace (`ModelKind.namespaced`: OME makes ClusterBaseModel and
FineTunedWeight cluster-scoped), so only `bm/` takes three parts. Pure: a string in, a `ModelRef`
out, or a `ValueError` that names the bad value and the accepted forms.
"""

from __future__ import annotations

from modelferry.messages import ModelRef
from modelferry.names import ModelKind

_KIND_NAMES: dict[str, ModelKind] = {
    "bm": ModelKind.BASE_MODEL,
    "basemodel": ModelKind.BASE_MODEL,
    "basemodels": ModelKind.BASE_MODEL,
    "cbm": ModelKind.CLUSTER_BASE_MODEL,
    "clusterbasemodel": ModelKind.CLUSTER_BASE_MODEL,
    "clusterbasemodels": ModelKind.CLUSTER_BASE_MODEL,
    "ftw": ModelKind.FINE_TUNED_WEIGHT,
    "finetunedweight": ModelKind.FINE_TUNED_WEIGHT,
    "finetunedweights": ModelKind.FINE_TUNED_WEIGHT,
}

FORMS = (
    "cbm/NAME, bm/NAMESPACE/NAME or ftw/NAME (or clusterbasemodel/..., basemodel/..., finetunedweight/...)"
)


def parse_model_arg(text: str) -> ModelRef:
    """The model `text` names (no uid: the CLI addresses a resource by name)."""
    parts = text.strip().split("/")
    kind = _KIND_NAMES.get(parts[0].lower()) if parts else None
    if kind is None:
        raise ValueError(f"model {text!r}: unknown kind {parts[0]!r}; expected {FORMS}")
    want = 3 if kind.namespaced else 2
    if len(parts) != want or not all(parts[1:]):
        shape = "KIND/NAMESPACE/NAME" if kind.namespaced else "KIND/NAME"
        scope = "namespaced" if kind.namespaced else "cluster-scoped"
        raise ValueError(f"model {text!r}: a {kind.value} is {scope}, so write {shape}; expected {FORMS}")
    if kind.namespaced:
        return ModelRef(kind=kind, namespace=parts[1], name=parts[2])
    return ModelRef(kind=kind, name=parts[1])


def short_name(ref: ModelRef) -> str:
    """The short form the CLI prints (`cbm/NAME`, `bm/NS/NAME`, `ftw/NAME`), which it also parses."""
    short = {
        ModelKind.BASE_MODEL: "bm",
        ModelKind.CLUSTER_BASE_MODEL: "cbm",
        ModelKind.FINE_TUNED_WEIGHT: "ftw",
    }[ref.kind]
    if ref.kind.namespaced:
        return f"{short}/{ref.namespace}/{ref.name}"
    return f"{short}/{ref.name}"
