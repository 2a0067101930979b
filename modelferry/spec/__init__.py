"""OME-compatible model resources (`ome.io/v1beta1`): typed models, rules and parsing.

Pure logic only: no I/O, no Kubernetes or Temporal imports. Build resources from untrusted
input with `parse_resource` (types and cross-field rules) rather than `model_validate`.
"""

from modelferry.spec.affinity import NodeAffinity
from modelferry.spec.basemodel import BaseModelSpec, DiffusionPipeline, ModelFormat, ModelFramework
from modelferry.spec.finetuned import FineTunedWeightSpec, ObjectReference
from modelferry.spec.meta import ObjectMeta
from modelferry.spec.parse import ResourceCheck, check_resource, is_model_object, parse_resource
from modelferry.spec.resources import (
    RESOURCE_CLASSES,
    BaseModelResource,
    ClusterBaseModelResource,
    FineTunedWeightResource,
    ModelResource,
    skip_config_parsing,
)
from modelferry.spec.rules import Problem, check_rules
from modelferry.spec.status import Condition, ConditionStatus, ModelState, ModelStatus, NodeModelStatus
from modelferry.spec.storage import DownloadPolicy, StorageSpec

__all__ = [
    "RESOURCE_CLASSES",
    "BaseModelResource",
    "BaseModelSpec",
    "ClusterBaseModelResource",
    "Condition",
    "ConditionStatus",
    "DiffusionPipeline",
    "DownloadPolicy",
    "FineTunedWeightResource",
    "FineTunedWeightSpec",
    "ModelFormat",
    "ModelFramework",
    "ModelResource",
    "ModelState",
    "ModelStatus",
    "NodeAffinity",
    "NodeModelStatus",
    "ObjectMeta",
    "ObjectReference",
    "Problem",
    "ResourceCheck",
    "StorageSpec",
    "check_resource",
    "check_rules",
    "is_model_object",
    "parse_resource",
    "skip_config_parsing",
]
