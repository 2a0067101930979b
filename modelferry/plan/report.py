"""What `modelferry plan` found for each model, as readable text or as JSON; pure.

One `ModelPlan` per model resource: where it would go and why the other nodes would not, what the
source holds (files, bytes, revision), what the weights' headers and config.json say (architecture,
exact parameter count), whether the bytes fit each node that would get them, and every problem met
on the way, each naming the field or the value at fault. A problem with one model never hides the
plan of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelferry.plan.fit import Fit, FitDecision, format_bytes


@dataclass(frozen=True, slots=True)
class NodePlan:
    node: str
    eligible: bool
    reason: str  # placement's reason, as the model's status would show it
    fit: FitDecision | None = None  # for eligible nodes, once the source's size is known


@dataclass(frozen=True, slots=True)
class SourcePlan:
    uri: str  # the backend's secret-free description
    revision: str
    files: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What config.json and the safetensors headers say, read before any download."""

    architecture: str | None = None
    model_type: str | None = None
    parameters: int | None = None
    parameter_size: str | None = None
    parameter_source: str = "none"  # safetensors (exact, from headers) | estimate | none
    max_tokens: int | None = None
    dtype: str | None = None
    quantization: str | None = None
    weight_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelPlan:
    kind: str
    name: str
    namespace: str | None = None
    document: str = ""  # where the resource was read (`file#2`)
    nodes: tuple[NodePlan, ...] = ()
    source: SourcePlan | None = None
    facts: ModelFacts | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)  # `<field or value>: <what is wrong>`

    @property
    def display(self) -> str:
        return f"{self.kind}/{self.namespace + '/' if self.namespace else ''}{self.name}"

    @property
    def eligible(self) -> list[str]:
        return [n.node for n in self.nodes if n.eligible]


def exit_code(plans: Sequence[ModelPlan]) -> int:
    """0 when every model could be planned; 1 when one has a problem (or there was nothing)."""
    return 0 if plans and not any(p.problems for p in plans) else 1


# --- text -------------------------------------------------------------------------------------


def render_text(plans: Sequence[ModelPlan]) -> str:
    blocks = [_render_model(plan) for plan in plans]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _render_model(plan: ModelPlan) -> str:
    lines = [f"{plan.display}" + (f"   ({plan.document})" if plan.document else "")]
    if plan.source is not None:
        s = plan.source
        lines.append(f"  source    {s.uri}")
        lines.append(f"            revision {s.revision}: {s.files} file(s), {format_bytes(s.total_bytes)}")
    if plan.facts is not None:
        lines.append(f"  model     {_describe_facts(plan.facts)}")
        lines.extend(f"            note: {note}" for note in plan.facts.notes)
    if plan.nodes:
        lines.append(f"  nodes     {len(plan.eligible)} of {len(plan.nodes)} would get it")
        width = max(len(n.node) for n in plan.nodes)
        for n in plan.nodes:
            verdict = "yes" if n.eligible else "no "
            line = f"    {n.node.ljust(width)}  {verdict}  {n.reason}"
            if n.fit is not None:
                line += f"; {_describe_fit(n.fit)}"
            lines.append(line)
    elif not plan.problems:
        lines.append("  nodes     the cluster has no nodes")
    lines.extend(f"  error     {problem}" for problem in plan.problems)
    return "\n".join(lines)


def _describe_facts(facts: ModelFacts) -> str:
    what = facts.architecture or facts.model_type or "architecture unknown (no config.json read)"
    if facts.architecture and facts.model_type:
        what += f" ({facts.model_type})"
    parts = [what]
    if facts.parameters is not None:
        how = {"safetensors": "exact, from the safetensors headers", "estimate": "estimated from config.json"}
        size = f"{facts.parameter_size} " if facts.parameter_size else ""
        found = how.get(facts.parameter_source, facts.parameter_source)
        parts.append(f"{size}({facts.parameters:,} parameters, {found})")
    else:
        parts.append("parameters unknown")
    if facts.max_tokens is not None:
        parts.append(f"maxTokens {facts.max_tokens}")
    if facts.dtype:
        parts.append(facts.dtype)
    if facts.quantization:
        parts.append(f"quantization {facts.quantization}")
    return ", ".join(parts)


def _describe_fit(decision: FitDecision) -> str:
    label = {Fit.FITS: "fits", Fit.DOES_NOT_FIT: "DOES NOT FIT", Fit.UNKNOWN: "fit unknown"}[decision.fit]
    return f"{label} ({decision.reason})"


# --- JSON -------------------------------------------------------------------------------------


def plan_json(plans: Sequence[ModelPlan]) -> dict[str, Any]:
    """The plans as one JSON object (camelCase keys, like the resources)."""
    return {"models": [_model_json(p) for p in plans]}


def _model_json(plan: ModelPlan) -> dict[str, Any]:
    source = plan.source
    facts = plan.facts
    return {
        "kind": plan.kind,
        "name": plan.name,
        "namespace": plan.namespace,
        "document": plan.document,
        "eligibleNodes": plan.eligible,
        "nodes": [
            {
                "name": n.node,
                "eligible": n.eligible,
                "reason": n.reason,
                "fit": None if n.fit is None else {"result": n.fit.fit.value, "reason": n.fit.reason},
            }
            for n in plan.nodes
        ],
        "source": None
        if source is None
        else {
            "uri": source.uri,
            "revision": source.revision,
            "files": source.files,
            "totalBytes": source.total_bytes,
        },
        "model": None
        if facts is None
        else {
            "architecture": facts.architecture,
            "modelType": facts.model_type,
            "parameterCount": facts.parameters,
            "parameterSize": facts.parameter_size,
            "parameterSource": facts.parameter_source,
            "maxTokens": facts.max_tokens,
            "dtype": facts.dtype,
            "quantization": facts.quantization,
            "weightFiles": list(facts.weight_files),
            "notes": list(facts.notes),
        },
        "problems": list(plan.problems),
    }
