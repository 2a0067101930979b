"""Node-queue activity: parse the activated model's config.json and safetensors headers."""

from __future__ import annotations

from temporalio import activity

from activities.download import storage_path_of
from activities.errors import typed_failures
from modelferry.errors import MetadataParseError
from modelferry.layout import model_layout
from modelferry.messages import ParseModelInput, ParseModelResult
from modelferry.metadata import parse_model_dir
from modelferry.settings import Settings


class ParseActivities:
    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="parse_model")
    @typed_failures
    def parse_model(self, inp: ParseModelInput) -> ParseModelResult:
        layout = model_layout(node_root=self._settings.node.root, storage_path=storage_path_of(inp))
        directory = layout.version_dir(inp.version_id) if inp.version_id else layout.link
        try:
            result = parse_model_dir(directory)
        except MetadataParseError as e:
            # The bytes are verified and in place; unparseable metadata is a warning on the
            # node, not a reason to withhold a model that may well serve.
            activity.logger.warning("%s on %s: %s", inp.ref.display(), inp.node, e)
            return ParseModelResult(metadata=None, warnings=[str(e)])
        return ParseModelResult(
            metadata=result.metadata.model_dump(by_alias=True, exclude_none=True, mode="json"),
            warnings=list(result.warnings),
        )
