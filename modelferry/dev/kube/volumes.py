"""A pod's volumes made local for a process kubelet, through the API the way the kubelet reaches
it: as the node, so the Node authorizer decides what it may read (only the ConfigMaps, Secrets
and ServiceAccount tokens of pods bound to it).

- hostPath: `<node root>/<path>` (created for `DirectoryOrCreate`/`FileOrCreate`/unset).
- emptyDir: a directory in the pod's sandbox.
- configMap, secret, downwardAPI and projected (serviceAccountToken via the TokenRequest API,
  bound to the pod; configMap; secret; downwardAPI): files written to the sandbox.
- persistentVolumeClaim: only a claim the node was given a local directory for (`claims=`);
  else the pod stays Pending (ContainerCreating), as with a claim that cannot be mounted.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .kubeapi import ApiError, KubeApi
from .podspec import Mount, field_value

SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class VolumeError(RuntimeError):
    """A volume cannot be set up (yet): the pod stays Pending and the kubelet tries again."""


@dataclass(frozen=True)
class PodVolumes:
    """Local paths by volume name, the hostPath each one is (if it is), and the ServiceAccount
    token projected into the pod, if any (its file and the CA file that came with it)."""

    local: dict[str, Path]
    host_paths: dict[str, str]
    token: Path | None = None
    token_ca: Path | None = None

    def mounts(self, container: Mapping[str, Any]) -> list[Mount]:
        found = []
        for m in container.get("volumeMounts") or []:
            local = self.local[m["name"]]
            if m.get("subPath"):
                local = local / m["subPath"]
                if not local.exists():
                    local.mkdir(parents=True)
            found.append(Mount(path=m["mountPath"], local=local, host_path=self.host_paths.get(m["name"])))
        return found


def set_up_volumes(
    pod: Mapping[str, Any], *, api: KubeApi, node_root: Path, sandbox: Path, claims: Mapping[str, Path]
) -> PodVolumes:
    local: dict[str, Path] = {}
    host_paths: dict[str, str] = {}
    token: Path | None = None
    token_ca: Path | None = None
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        directory = sandbox / "volumes" / name
        if "hostPath" in volume:
            local[name] = _host_path(node_root, volume["hostPath"])
            host_paths[name] = volume["hostPath"]["path"]
        elif "emptyDir" in volume:
            directory.mkdir(parents=True, exist_ok=True)
            local[name] = directory
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                raise VolumeError(f"volume {name}: claim {claim} has no local directory on this node")
            local[name] = claims[claim]
        else:
            files = _projected_files(pod, volume, api=api)
            directory.mkdir(parents=True, exist_ok=True)
            for relative, content in files.items():
                path = directory / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            local[name] = directory
            if any("serviceAccountToken" in s for s in (volume.get("projected") or {}).get("sources") or []):
                token, token_ca = directory / "token", directory / "ca.crt"
    return PodVolumes(local=local, host_paths=host_paths, token=token, token_ca=token_ca)


def _host_path(node_root: Path, source: Mapping[str, Any]) -> Path:
    path = node_root / source["path"].lstrip("/")
    kind = source.get("type") or ""
    if kind in ("", "DirectoryOrCreate"):
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif not path.exists():
        raise VolumeError(f"hostPath {source['path']} ({kind}) does not exist on this node")
    return path


def _projected_files(pod: Mapping[str, Any], volume: Mapping[str, Any], *, api: KubeApi) -> dict[str, bytes]:
    """{relative path: content} for a configMap, secret, downwardAPI or projected volume."""
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for source in volume["projected"].get("sources") or []:
            files.update(_projected_files(pod, source, api=api))
        return files
    if "serviceAccountToken" in volume:
        return {volume["serviceAccountToken"]["path"]: _token(pod, volume["serviceAccountToken"], api=api)}
    if "downwardAPI" in volume:
        return {
            item["path"]: field_value(pod, item["fieldRef"]["fieldPath"]).encode()
            for item in volume["downwardAPI"].get("items") or []
        }
    for kind, key in (("configmaps", "configMap"), ("secrets", "secret")):
        if key in volume:
            ref = volume[key]
            name = ref.get("name") or ref.get("secretName")
            data = read_data(api, kind=kind, namespace=pod["metadata"]["namespace"], name=name)
            if data is None:
                if ref.get("optional"):
                    return {}
                raise VolumeError(f"{kind} {name} not found")
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            return {i["path"]: data[i["key"]] for i in items if i["key"] in data}
    raise VolumeError(
        f"volume {volume.get('name')}: kind {sorted(volume)} is not supported by the process kubelet"
    )


def read_data(api: KubeApi, *, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    """A ConfigMap's or Secret's values (Secrets decoded), None when it does not exist."""
    try:
        found = api.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")
    except ApiError as e:
        if e.status == 404:
            return None
        raise VolumeError(f"reading {kind} {namespace}/{name}: {e}") from e
    data = found.get("data") or {}
    if kind == "secrets":
        return {k: base64.b64decode(v) for k, v in data.items()}
    binary = {k: base64.b64decode(v) for k, v in (found.get("binaryData") or {}).items()}
    return {**{k: v.encode() for k, v in data.items()}, **binary}


def _token(pod: Mapping[str, Any], source: Mapping[str, Any], *, api: KubeApi) -> bytes:
    """A token for the pod's ServiceAccount, bound to the pod (the Node authorizer and
    NodeRestriction let a node ask only for pods bound to it)."""
    meta = pod["metadata"]
    account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [source["audience"]] if source.get("audience") else [],
            "expirationSeconds": source.get("expirationSeconds", 3600),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        },
    }
    try:
        answer = api.post(f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", request)
    except ApiError as e:
        raise VolumeError(f"token for serviceaccount {meta['namespace']}/{account}: {e}") from e
    return str(answer["status"]["token"]).encode()
