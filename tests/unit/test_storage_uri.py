"""Storage URIs parse into typed values; bad ones fail with the URI quoted and the problem named."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from modelferry.errors import InvalidStorageUriError, UnsafePathError
from modelferry.storage_uri import (
    HuggingFaceUri,
    OciAuthType,
    OciUri,
    PvcUri,
    S3Uri,
    VendorUri,
    parse_storage_uri,
    safe_relative_path,
    validate_model_path,
)

GOOD = [
    # (uri, parameters, cluster_scoped, expected fields)
    ("hf://meta-llama/Llama-3.1-8B-Instruct", None, True,
     HuggingFaceUri(uri="hf://meta-llama/Llama-3.1-8B-Instruct", repo_id="meta-llama/Llama-3.1-8B-Instruct",
                    revision="main", revision_source="default")),
    ("hf://rednote-hilab/dots.vlm1.inst", None, False,
     HuggingFaceUri(uri="hf://rednote-hilab/dots.vlm1.inst", repo_id="rednote-hilab/dots.vlm1.inst")),
    ("hf://gpt2", None, False, HuggingFaceUri(uri="hf://gpt2", repo_id="gpt2")),
    ("hf://org/repo@v1.0", {"revision": "dev"}, False,
     HuggingFaceUri(uri="hf://org/repo@v1.0", repo_id="org/repo", revision="v1.0", revision_source="uri")),
    ("hf://org/repo", {"revision": "0123abcd"}, False,
     HuggingFaceUri(uri="hf://org/repo", repo_id="org/repo", revision="0123abcd",
                    revision_source="parameters")),
    ("hf://org/repo@refs/pr/1", None, False,
     HuggingFaceUri(uri="hf://org/repo@refs/pr/1", repo_id="org/repo", revision="refs/pr/1",
                    revision_source="uri")),
    ("hf://org/repo", {"revision": ""}, False, HuggingFaceUri(uri="hf://org/repo", repo_id="org/repo")),
    ("HF://org/repo", None, False, HuggingFaceUri(uri="HF://org/repo", repo_id="org/repo")),
    ("s3://my-bucket/models/llama/", {"endpoint": "http://minio:9000", "region": "us-east-1"}, False,
     S3Uri(uri="s3://my-bucket/models/llama/", bucket="my-bucket", prefix="models/llama",
           endpoint="http://minio:9000", region="us-east-1")),
    ("s3://a.b-c", None, False, S3Uri(uri="s3://a.b-c", bucket="a.b-c", prefix="")),
    ("oci://n/axyz/b/models/o/llama/3", {"region": "us-ashburn-1"}, False,
     OciUri(uri="oci://n/axyz/b/models/o/llama/3", namespace="axyz", bucket="models", prefix="llama/3",
            region="us-ashburn-1", auth_type=OciAuthType.INSTANCE_PRINCIPAL)),
    ("oci://n/axyz/b/Models_1/o/x", {"auth_type": "UserPrincipal"}, False,
     OciUri(uri="oci://n/axyz/b/Models_1/o/x", namespace="axyz", bucket="Models_1", prefix="x",
            auth_type=OciAuthType.USER_PRINCIPAL)),
    ("oci://n/axyz/b/models/o/x", {"authType": "OkeWorkloadIdentity"}, False,
     OciUri(uri="oci://n/axyz/b/models/o/x", namespace="axyz", bucket="models", prefix="x",
            auth_type=OciAuthType.OKE_WORKLOAD_IDENTITY)),
    ("oci://n/axyz/b/models", None, False,
     OciUri(uri="oci://n/axyz/b/models", namespace="axyz", bucket="models")),
    ("oci://n/axyz/b/models/o/", None, False,
     OciUri(uri="oci://n/axyz/b/models/o/", namespace="axyz", bucket="models")),
    ("pvc://models-pvc/llama/8b", None, False,
     PvcUri(uri="pvc://models-pvc/llama/8b", namespace=None, claim_name="models-pvc", sub_path="llama/8b")),
    ("pvc://team-a:models.pvc/./llama//8b/", None, True,
     PvcUri(uri="pvc://team-a:models.pvc/./llama//8b/", namespace="team-a", claim_name="models.pvc",
            sub_path="llama/8b")),
    ("pvc://models-pvc", None, False,
     PvcUri(uri="pvc://models-pvc", namespace=None, claim_name="models-pvc")),
    ("vendor://acme/models/llama/8b", None, False,
     VendorUri(uri="vendor://acme/models/llama/8b", vendor="acme", resource_type="models", path="llama/8b")),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "parameters", "cluster_scoped", "expected"), GOOD)
def test_good_uri_parses_to_typed_value(uri, parameters, cluster_scoped, expected):
    parsed = parse_storage_uri(uri, parameters=parameters, cluster_scoped=cluster_scoped)
    assert parsed == expected
    assert parsed.scheme == uri.split("://")[0].lower()
    assert parsed.describe()


BAD = [
    # (uri, parameters, cluster_scoped, words the message must contain besides the quoted URI)
    ("meta-llama/Llama-3", None, False, ["supported schemes: hf://, s3://, oci://, pvc://, vendor://"]),
    ("gs://bucket/x", None, False, ["unsupported scheme 'gs'", "hf://, s3://"]),
    ("hf://", None, False, ["expected hf://{org}/{repo}[@{revision}]"]),
    ("hf://org/", None, False, ["expected hf://{org}/{repo}[@{revision}]"]),
    ("hf://a/b/c", None, False, ["expected hf://{org}/{repo}[@{revision}]"]),
    ("hf://org/re--po", None, False, ["'re--po'", "no '--'"]),
    ("hf://org/re..po", None, False, ["'re..po'"]),
    ("hf://-org/repo", None, False, ["'-org'"]),
    ("hf://org/repo.", None, False, ["'repo.'"]),
    ("hf://org/re$po", None, False, ["'re$po'"]),
    ("hf://org/" + "r" * 97, None, False, ["at most 96"]),
    ("hf://org/repo.git", None, False, ["'.git'"]),
    ("hf://org/repo@", None, False, ["revision ''", "after '@'"]),
    ("hf://org/repo@a..b", None, False, ["revision 'a..b'"]),
    ("hf://org/repo", {"revision": "bad rev"}, False, ["parameters.revision"]),
    ("hf://org/re po", None, False, ["whitespace"]),
    ("s3://", None, False, ["expected s3://{bucket}/{prefix}"]),
    ("s3://ab/x", None, False, ["'ab' is not a valid bucket name", "3-63"]),
    ("s3://My-Bucket/x", None, False, ["'My-Bucket'"]),
    ("s3://bucket-/x", None, False, ["'bucket-'"]),
    ("s3://a..b/x", None, False, ["'a..b'"]),
    ("s3://192.168.1.10/x", None, False, ["IP address"]),
    ("s3://" + "b" * 64, None, False, ["is not a valid bucket name"]),
    ("s3://bucket/a//b", None, False, ["empty, '.' or '..'"]),
    ("s3://bucket/a/../b", None, False, ["'..'"]),
    ("s3://bucket/x", {"endpoint": "minio:9000"}, False, ["parameters.endpoint 'minio:9000'"]),
    ("oci://bucket/x", None, False, ["expected oci://n/{namespace}/b/{bucket}/o/{prefix}"]),
    ("oci://n/ns/b/", None, False, ["expected oci://n/{namespace}/b/{bucket}/o/{prefix}"]),
    ("oci://n/ns/b/bk/x/y", None, False, ["expected oci://"]),
    ("oci://n/ns/b/b$k/o/x", None, False, ["'b$k' is not a valid bucket name"]),
    ("oci://n/n%s/b/bk/o/x", None, False, ["'n%s' is not a valid Object Storage namespace"]),
    ("oci://n/ns/b/bk/o/a/../b", None, False, ["'..'"]),
    ("oci://n/ns/b/bk/o/x", {"auth_type": "ApiKey"}, False,
     ["parameters.auth_type 'ApiKey'",
      "InstancePrincipal, UserPrincipal, ResourcePrincipal, OkeWorkloadIdentity"]),
    ("oci://n/ns/b/bk/o/x", {"authType": "instance_principal"}, False, ["parameters.authType"]),
    ("oci://n/ns/b/bk/o/x", {"auth_type": "UserPrincipal", "authType": "InstancePrincipal"}, False,
     ["disagree"]),
    ("pvc://", None, False, ["expected pvc://[{namespace}:]{pvc-name}/{sub-path}"]),
    ("pvc://ns:/x", None, False, ["expected pvc://"]),
    ("pvc://:claim/x", None, False, ["expected pvc://"]),
    ("pvc://models/x", None, True, ["ClusterBaseModel must name the claim's namespace"]),
    ("pvc://Team:claim/x", None, False, ["namespace 'Team'", "DNS-1123 label"]),
    ("pvc://ns:Claim_1/x", None, False, ["claim name 'Claim_1'", "DNS-1123 subdomain"]),
    ("pvc://ns:claim/a/../../etc", None, False, ["'..'"]),
    ("vendor://acme/models", None, False, ["expected vendor://{vendor}/{resource-type}/{path}"]),
    ("vendor://acme//x", None, False, ["expected vendor://"]),
    ("vendor://ac me/models/x", None, False, ["whitespace"]),
    ("vendor://acme/mod!els/x", None, False, ["resource type 'mod!els'"]),
    ("vendor://acme/models/a/../b", None, False, ["'..'"]),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "parameters", "cluster_scoped", "words"), BAD)
def test_bad_uri_error_quotes_uri_and_names_problem(uri, parameters, cluster_scoped, words):
    with pytest.raises(InvalidStorageUriError) as caught:
        parse_storage_uri(uri, parameters=parameters, cluster_scoped=cluster_scoped)
    message = str(caught.value)
    assert message.startswith(f"storage URI '{uri}': ")
    for word in words:
        assert word in message
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/raid/models/meta/llama-3-1-8b-instruct", True),
        ("/mnt/models/with space", True),
        ("/", False),
        ("relative/models", False),
        ("/raid//models", False),
        ("/raid/models/", False),
        ("/raid/./models", False),
        ("/raid/models/.", False),
        ("/raid/../etc", False),
        ("/raid/models/..", False),
        ("/raid/mo\x00dels", False),
        ("/raid\\models", False),
        ("", False),
    ],
)
def test_model_path_must_be_absolute_and_normalised(path, ok):
    if ok:
        assert validate_model_path(path) == path
    else:
        with pytest.raises(UnsafePathError) as caught:
            validate_model_path(path)
        assert str(caught.value).startswith(f"storage path '{path}': ")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("config.json", PurePosixPath("config.json")),
        ("original/params.json", PurePosixPath("original/params.json")),
        (".gitattributes", PurePosixPath(".gitattributes")),
        ("a..b/c", PurePosixPath("a..b/c")),
        ("", None),
        ("/etc/passwd", None),
        ("../outside", None),
        ("a/../../outside", None),
        ("a//b", None),
        ("a/", None),
        ("./a", None),
        ("a\\..\\b", None),
        ("a\x00b", None),
        ("a\nb", None),
    ],
)
def test_object_name_stays_inside_model_dir(name, expected):
    if expected is not None:
        assert safe_relative_path(name) == expected
    else:
        with pytest.raises(UnsafePathError) as caught:
            safe_relative_path(name)
        assert f"object name '{name}'" in str(caught.value)
