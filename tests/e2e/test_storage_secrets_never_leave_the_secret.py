"""Storage credentials are read by the node activity that needs them and go nowhere else.

Three models run through the whole system (embedded API server, Temporal dev server, watcher,
control and node workers), each naming a Kubernetes Secret in `spec.storage.key`
(OME's `storageKey`) that holds a known value:

- a gated Hub repository with the right token: Ready;
- the same repository with a wrong token: Failed, access denied;
- an S3 bucket (moto) with an access key pair: Ready.

Then every place the system writes to is searched for each secret value, as text and in base64
(at each of the three byte alignments, plain and URL-safe): every run of every workflow history
(JSON as Temporal stores it, with payloads base64, and again with every payload decoded; plus the
raw protobuf bytes, and each workflow's description: memo, search attributes, details); every log
record of this process at DEBUG, whatever the logger; what the Temporal server and the SDK core
printed; all Kubernetes Events; the model resources (spec, status, annotations); the agent
namespace's ConfigMaps; the Node objects (labels, annotations). None may hold a secret.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.client import Client

from modelferry.names import API_GROUP, API_VERSION
from tests.e2e.harness import Pipeline, cluster_model, running_pipeline, unique
from tests.servers.fake_hf import FakeHub
from tests.servers.moto_s3 import CREDENTIALS, running_moto_server, s3_client

pytestmark = pytest.mark.e2e

GOOD_TOKEN = "hf_SECRETSCANTOKEN123goodQv7Lx9Wm2Rt8Yp4Kd6Hs"
WRONG_TOKEN = "hf_SECRETSCANWRONG456badZb3Nc5Vf1Gj7Ue9Ai0Ow"
S3_KEY_ID = "AKIASECRETSCAN7Q2W4E6R"
S3_SECRET_KEY = "SecretScanS3+Key/wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
SECRETS = {
    "hf token": GOOD_TOKEN,
    "wrong hf token": WRONG_TOKEN,
    "s3 access key id": S3_KEY_ID,
    "s3 secret access key": S3_SECRET_KEY,
}

CONFIG = json.dumps(
    {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 256,
        "intermediate_size": 128,
        "max_position_embeddings": 1024,
    }
).encode()
FILES = {"config.json": CONFIG, "model.safetensors": b"w" * 8192}


def forms(secret: str) -> dict[str, str]:
    """The secret as text and as it would look inside any base64 text: the middle of its encoding
    after 0, 1 or 2 bytes of something else (the first and last 4-character groups depend on the
    neighbours), plain and URL-safe."""
    out = {"text": secret}
    raw = secret.encode()
    for offset in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            out[f"{name}@{offset}"] = encode(b"\0" * offset + raw).decode()[4:-4]
    return out


# Libraries that print raw HTTP traffic at DEBUG, by design: the kubernetes client every response
# body (a Secret read included), botocore every request's headers (the access key id is in the
# SigV4 `Authorization` header). The processes that read Secrets (node and control workers) log at
# INFO, so their DEBUG records are not searched; at INFO and above they are, like every other logger.
WIRE_LOGGERS = ("kubernetes.client.rest", "botocore")


class Records(logging.Handler):
    """Every record, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []
        self.wire_debug_lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.INFO and record.name.startswith(WIRE_LOGGERS):
            self.wire_debug_lines += 1
            return
        try:
            self.lines.append(self.format(record))
        except Exception as err:  # a record that cannot be formatted is still searched
            self.lines.append(f"{record.name}: {record.msg!r} {record.args!r} ({err})")


@pytest.fixture
def every_log_record() -> Iterator[Records]:
    root = logging.getLogger()
    handler, level = Records(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def decoded_payloads(value: Any) -> Iterator[str]:
    """Every `data` of a payload-like dict (MessageToDict form: bytes as base64), decoded."""
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, str) and "metadata" in value:
            yield base64.b64decode(data).decode("utf-8", "replace")
        for item in value.values():
            yield from decoded_payloads(item)
    elif isinstance(value, list):
        for item in value:
            yield from decoded_payloads(item)


async def every_history(client: Client) -> dict[str, str]:
    """(workflow id, run id) -> everything Temporal keeps for that run, as searchable text."""
    texts: dict[str, str] = {}
    async for execution in client.list_workflows():
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        description = await handle.describe()
        parts = [history.to_json()]  # as stored: payload bytes in base64
        for event in history.events:
            parts.append(event.SerializeToString().decode("utf-8", "replace"))  # raw bytes
            parts.extend(decoded_payloads(json_format.MessageToDict(event)))  # payloads decoded
        parts.append(json_format.MessageToJson(description.raw_description))
        parts.extend(decoded_payloads(json_format.MessageToDict(description.raw_description)))
        texts[f"history {execution.id} run {execution.run_id}"] = "\n".join(parts)
    return texts


def kubernetes_objects(p: Pipeline, models: list[dict[str, Any]]) -> dict[str, str]:
    api = p.api_client
    texts = {
        "events": json.dumps(api.sanitize_for_serialization(p.core.list_event_for_all_namespaces())),
        "agent configmaps": json.dumps(
            api.sanitize_for_serialization(p.core.list_namespaced_config_map(p.settings.kube.agent_namespace))
        ),
        "nodes": json.dumps(api.sanitize_for_serialization(p.core.list_node())),
    }
    for model in models:
        name = model["metadata"]["name"]
        obj = p.custom.get_cluster_custom_object(API_GROUP, API_VERSION, "clusterbasemodels", name)
        texts[f"resource {name}"] = json.dumps(obj)
    return texts


def leaks(texts: dict[str, str]) -> list[str]:
    found = []
    for where, text in texts.items():
        for secret_name, secret in SECRETS.items():
            for form, needle in forms(secret).items():
                if needle in text:
                    at = text.index(needle)
                    context = text[max(0, at - 120) : at + len(needle) + 40]
                    found.append(f"{secret_name} ({form}) in {where}: ...{context}...")
    return found


def with_secret(name: str, *, uri: str, key: str, parameters: dict[str, str]) -> dict[str, Any]:
    model = cluster_model(name, uri=uri, path=f"/raid/models/{name}")
    model["spec"]["storage"].update({"storageKey": key, "parameters": parameters})
    return model


async def test_tokens_and_keys_appear_in_no_history_log_event_status_or_label(
    tmp_path, one_node_cluster, every_log_record, capfd
):
    with FakeHub() as hub, running_moto_server() as s3_url:
        hub.add_repo("acme/gated", FILES, gated=True, tokens={GOOD_TOKEN})
        setup = s3_client(s3_url, **CREDENTIALS)
        setup.create_bucket(Bucket="models")
        for path, data in FILES.items():
            setup.put_object(Bucket="models", Key=f"tiny/{path}", Body=data)

        good = with_secret(
            unique("hf-good"), uri="hf://acme/gated", key="hf-good", parameters={"endpoint": hub.url}
        )
        wrong = with_secret(
            unique("hf-wrong"), uri="hf://acme/gated", key="hf-wrong", parameters={"endpoint": hub.url}
        )
        s3 = with_secret(unique("s3"), uri="s3://models/tiny", key="s3-keys", parameters={"endpoint": s3_url})
        async with running_pipeline(cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"]) as p:
            namespace = p.settings.kube.agent_namespace
            for name, data in (
                ("hf-good", {"token": GOOD_TOKEN}),
                ("hf-wrong", {"token": WRONG_TOKEN}),
                ("s3-keys", {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}),
            ):
                encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
                p.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": encoded})
            for model in (good, wrong, s3):
                await p.apply(model)

            ready = await p.wait_state(good, "Ready", timeout=60)
            assert ready["status"]["nodesReady"] == ["node-1"]
            assert (
                p.node_roots["node-1"] / f"raid/models/{good['metadata']['name']}/model.safetensors"
            ).exists()
            await p.wait_state(s3, "Ready", timeout=60)
            failed = await p.wait_state(wrong, "Failed", timeout=60)
            message = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")["message"]
            assert "GatedRepoError" in message and "request access" in message, message
            assert not hub.cdn_saw_authorization, "the token went to the CDN"

            texts = await every_history(p.client)
            model_ids = {f"ome/clusterbasemodel/{m['metadata']['name']}" for m in (good, wrong, s3)}
            scanned = {key.split()[1] for key in texts}
            assert model_ids <= scanned and {f"{i}/node/node-1" for i in model_ids} <= scanned, scanned
            texts.update(kubernetes_objects(p, [good, wrong, s3]))

        # After shutdown, so every line the workers and servers printed is in.
        texts["log records"] = "\n".join(every_log_record.lines)
        out, err = capfd.readouterr()
        texts["stdout and stderr"] = out + err
        texts["temporal server log"] = (tmp_path / "temporal.log").read_text(errors="replace")

    assert len(every_log_record.lines) > 100, "the log capture saw almost nothing"
    assert any("GatedRepoError" in t for k, t in texts.items() if k.startswith("history")), (
        "the histories scanned do not even hold the failure"
    )
    found = leaks(texts)
    assert not found, "\n".join(found)
