"""The rules of `modelferry validate` that a CRD can carry, as CEL rules (`x-kubernetes-validations`),
so `kubectl apply` refuses what `validate` refuses, with the same message where CEL can say it.

The source of truth stays `modelferry.storage_uri` and `modelferry.spec.rules`; these rules are a
sound subset of them: they never refuse what `validate` accepts (tests/unit checks that over the
corpus and the valid cases of the validator's tests), and they refuse every category of invalid
input (scheme and shape of `storageUri`, `..`, absolute and normalised `storage.path`, a
cluster-scoped resource's `pvc://` namespace, `key`/`storageKey` agreement, the OCI auth type and
the S3 endpoint in `parameters`, the Hub revision).

What CEL cannot say the same way:
- Standard CEL has no substring or split (Kubernetes' extension libraries do, but the embedded API
  server evaluates standard CEL with cel-python), so a message cannot quote the part of a URI at
  fault; it quotes the whole value, as the validator does, and names the part in words.
- The validator shortens a quoted value past 200 characters; CEL quotes it whole.
- A BaseModel may read only claims in its own namespace: a rule sees `metadata.name` but not
  `metadata.namespace`, so only `validate` and the watcher refuse a foreign claim.
- Lengths in bytes (a file name of at most 255 bytes): CEL counts characters, so the rule is looser.

Every regular expression is RE2 (what both API servers run): no look-around, anchored where needed,
`[^/]` rather than `.` so a newline cannot slip past.
"""

from __future__ import annotations

from typing import Any

from modelferry.storage_uri import NAME_MAX, PATH_MAX, SUPPORTED_SCHEMES, OciAuthType

Rule = dict[str, Any]

# A string's longest accepted length, so a real API server can bound each rule's cost. The path
# limit is the validator's (at most PATH_MAX - 1 bytes, and a character is at least one byte).
PATH_MAX_LENGTH = PATH_MAX - 1

_SCHEMES = "|".join(SUPPORTED_SCHEMES)
_SUPPORTED = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
# One segment of an object-store prefix or vendor path: not empty, not '.', not '..'.
_SEGMENT = r"(?:[^/]*[^/.][^/]*|\.\.\.+)"
# What may follow `{bucket}` (s3) or `/o` (oci) up to the end: nothing, or '/' and a prefix of such
# segments (one trailing '/' is dropped, so '/' and '//' both name the whole bucket).
_PREFIX_TO_END = f"(?:/(?:/|{_SEGMENT}(?:/{_SEGMENT})*/?)?)?$"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HF_REVISION = r"[A-Za-z0-9_./-]{1,255}"
_CONTROL_OR_SPACE = r"[\x00-\x20\x7f]"
_DOUBLE_DASH_OR_DOTS = r"[^@]*(--|\.\.)"
_BAD_URI_REVISION = r"[^@]*@(/|.*(\.\.|//)|.*/$)"
_BAD_REVISION = r"^/|\.\.|//|/$"
_BUCKET_DOTS = r"[^/]*\.\."
_BUCKET_IPV4 = r"[0-9]{1,3}(\.[0-9]{1,3}){3}(/|$)"
_HTTP_URL = r"^https?://[^\s/]+(/\S*)?$"
_VENDOR_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9])?"


def _cel(text: str) -> str:
    """`text` as a single-quoted CEL string literal (backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _matches(subject: str, regex: str) -> str:
    return f"{subject}.matches({_cel(regex)})"


def _rule(rule: str, *, what: str, subject: str, problem: str, field_path: str | None = None) -> Rule:
    """A rule whose message is the validator's: `<what> '<value>': <problem>`."""
    out: Rule = {
        "rule": rule,
        "message": f"{what}: {problem}",
        "messageExpression": _cel(what + " '") + " + " + subject + " + " + _cel("': " + problem),
    }
    if field_path:
        out["fieldPath"] = field_path
    return out


def _scheme(name: str) -> str:
    return f"^(?i:{name})://"


def _implies(condition: str, consequence: str) -> str:
    """`condition` → `consequence` in CEL (`||` binds looser than `&&`, so a conjunction needs no
    parentheses)."""
    return f"!{condition} || {consequence}"


def _on_scheme(subject: str, scheme: str, expression: str) -> str:
    """`expression` must hold when `subject` is a URI of `scheme`."""
    return _implies(_matches(subject, _scheme(scheme)), f"({expression})")


# --- spec.storage.path ------------------------------------------------------------------------


def path_rules() -> list[Rule]:
    """The rules of `modelferry.storage_uri.validate_model_path`, on the `path` string itself."""

    def rule(expression: str, problem: str) -> Rule:
        return _rule(expression, what="storage path", subject="self", problem=problem)

    return [
        rule("self.startsWith('/')", "must be absolute"),
        rule("self != '/'", "must not be the filesystem root"),
        rule(
            "!" + _matches("self", r"[\x00-\x1f\x7f\\]"),
            "must not contain control characters or backslashes",
        ),
        rule("!" + _matches("self", r"(^|/)\.\.(/|$)"), "must not contain '..'"),
        rule(
            "self == '/' || !(self.contains('//') || self.endsWith('/'))",
            "must be normalised (no '//' and no trailing '/')",
        ),
        rule("!" + _matches("self", r"(^|/)\.(/|$)"), "must be normalised (no '.' segments)"),
        rule(
            "!" + _matches("self", f"[^/]{{{NAME_MAX + 1}}}"),
            f"has a part longer than {NAME_MAX} characters; a file name can have at most {NAME_MAX} bytes",
        ),
    ]


# --- spec.storage.storageUri ------------------------------------------------------------------


def storage_uri_rules(*, cluster_scoped: bool) -> list[Rule]:
    """The rules of `modelferry.storage_uri.parse_storage_uri` that need only the URI, on the
    `storageUri` string itself; a rule about one scheme holds for every other scheme."""

    def rule(expression: str, problem: str) -> Rule:
        return _rule(expression, what="storage URI", subject="self", problem=problem)

    def on(scheme: str, expression: str) -> str:
        return _on_scheme("self", scheme, expression)

    supported = _matches("self", f"^(?i:{_SCHEMES})://")
    rules = [
        rule(
            "self.contains('://') && !self.startsWith('://')",
            f"expected {{scheme}}://...; supported schemes: {_SUPPORTED}",
        ),
        rule(
            f"!self.contains('://') || self.startsWith('://') || {supported}",
            f"unsupported scheme; supported schemes: {_SUPPORTED}",
        ),
        rule(
            f"!{supported} || !{_matches('self', _CONTROL_OR_SPACE)}",
            "contains whitespace or control characters",
        ),
        # hf://{org}/{repo}[@{revision}]
        rule(
            on("hf", _matches("self", _scheme("hf") + r"[^/@]+(/[^/@]+)?(@|$)")),
            "expected hf://{org}/{repo}[@{revision}]",
        ),
        rule(
            on(
                "hf",
                _implies(
                    _matches("self", _scheme("hf") + r"[^/@]+(/[^/@]+)?(@|$)"),
                    f"{_matches('self', _scheme('hf') + f'{_HF_PART}(/{_HF_PART})?(@|$)')}"
                    f" && !{_matches('self', _scheme('hf') + _DOUBLE_DASH_OR_DOTS)}",
                ),
            ),
            "the repository name must be one or two parts of letters, digits, '-', '_', '.' "
            "(at most 96 each; no '--' or '..'; not starting or ending with '-' or '.')",
        ),
        rule(
            on("hf", "!" + _matches("self", _scheme("hf") + r"[^@]*\.git(@|$)")),
            "the repository name must not end with '.git'",
        ),
        rule(
            on(
                "hf",
                _implies(
                    _matches("self", _scheme("hf") + "[^@]*@"),
                    f"{_matches('self', _scheme('hf') + f'[^@]*@{_HF_REVISION}$')}"
                    f" && !{_matches('self', _scheme('hf') + _BAD_URI_REVISION)}",
                ),
            ),
            "the revision after '@' is not a valid branch, tag or commit",
        ),
        # s3://{bucket}/{prefix}
        rule(on("s3", _matches("self", _scheme("s3") + "[^/]")), "expected s3://{bucket}/{prefix}"),
        rule(
            on(
                "s3",
                f"!{_matches('self', _scheme('s3') + '[^/]')}"
                f" || {_matches('self', _scheme('s3') + r'[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/|$)')}"
                f" && !{_matches('self', _scheme('s3') + _BUCKET_DOTS)}"
                f" && !{_matches('self', _scheme('s3') + _BUCKET_IPV4)}",
            ),
            "the bucket is not a valid bucket name (3-63 characters: lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit, not an IP address)",
        ),
        rule(
            on("s3", _matches("self", _scheme("s3") + "[^/]*" + _PREFIX_TO_END)),
            "the prefix must not contain empty, '.' or '..' segments",
        ),
        # oci://n/{namespace}/b/{bucket}/o/{prefix}
        rule(
            on("oci", _matches("self", _scheme("oci") + r"n/[^/]+/b/[^/]+(/?$|/o$|/o/)")),
            "expected oci://n/{namespace}/b/{bucket}/o/{prefix}",
        ),
        rule(
            on(
                "oci",
                _implies(
                    _matches("self", _scheme("oci") + "n/[^/]+/b/"),
                    _matches("self", _scheme("oci") + "n/[A-Za-z0-9_-]{1,128}/b/"),
                ),
            ),
            "the namespace is not a valid Object Storage namespace",
        ),
        rule(
            on(
                "oci",
                _implies(
                    _matches("self", _scheme("oci") + "n/[^/]+/b/[^/]+"),
                    _matches("self", _scheme("oci") + "n/[^/]+/b/[A-Za-z0-9_.-]{1,256}(/|$)"),
                ),
            ),
            "the bucket is not a valid bucket name (letters, digits, '-', '_', '.'; at most 256)",
        ),
        rule(
            on(
                "oci",
                _implies(
                    _matches("self", _scheme("oci") + "n/[^/]+/b/[^/]+/o/"),
                    _matches("self", _scheme("oci") + "n/[^/]+/b/[^/]+/o" + _PREFIX_TO_END),
                ),
            ),
            "the prefix must not contain empty, '.' or '..' segments",
        ),
        # pvc://[{namespace}:]{pvc-name}/{sub-path}
        rule(
            on("pvc", _matches("self", _scheme("pvc") + "([^/:]+|[^/:]+:[^/]+)(/|$)")),
            "expected pvc://[{namespace}:]{pvc-name}/{sub-path}",
        ),
        rule(
            on(
                "pvc",
                _implies(
                    _matches("self", _scheme("pvc") + "[^/:]+:"),
                    _matches("self", _scheme("pvc") + f"{_DNS_LABEL}:"),
                ),
            ),
            "the namespace is not a valid DNS-1123 label",
        ),
        rule(
            on(
                "pvc",
                _implies(
                    _matches("self", _scheme("pvc") + "([^/:]+|[^/:]+:[^/]+)(/|$)"),
                    f"{_matches('self', _scheme('pvc') + f'([^/:]+:)?{_DNS_SUBDOMAIN}(/|$)')}"
                    f" && !{_matches('self', _scheme('pvc') + '([^/:]+:)?[^/:]{254}')}",
                ),
            ),
            "the claim name is not a valid DNS-1123 subdomain",
        ),
        rule(
            on("pvc", "!" + _matches("self", _scheme("pvc") + r"[^/]*(/[^/]*)*/\.\.(/|$)")),
            "the sub-path must not contain '..'",
        ),
        rule(
            on("pvc", "!" + _matches("self", _scheme("pvc") + r"[^/]*/[^\\]*\\")),
            "the sub-path must not contain backslashes (a path inside the claim uses '/')",
        ),
        rule(
            on("pvc", "!" + _matches("self", _scheme("pvc") + f"[^/]*/([^/]*/)*[^/]{{{NAME_MAX + 1}}}")),
            f"the sub-path has a part longer than {NAME_MAX} characters; a file name can have "
            f"at most {NAME_MAX} bytes",
        ),
        # vendor://{vendor}/{resource-type}/{path}
        rule(
            on("vendor", _matches("self", _scheme("vendor") + r"[^/]+/[^/]+/[\s\S]")),
            "expected vendor://{vendor}/{resource-type}/{path}",
        ),
        rule(
            on(
                "vendor",
                _implies(
                    _matches("self", _scheme("vendor") + r"[^/]+/[^/]+/[\s\S]"),
                    _matches("self", _scheme("vendor") + f"{_VENDOR_NAME}/{_VENDOR_NAME}/"),
                ),
            ),
            "the vendor and resource type must be letters, digits, '-', '_' and '.'",
        ),
        rule(
            on(
                "vendor",
                _implies(
                    _matches("self", _scheme("vendor") + r"[^/]+/[^/]+/[\s\S]"),
                    _matches("self", _scheme("vendor") + f"[^/]+/[^/]+/{_SEGMENT}(/{_SEGMENT})*$"),
                ),
            ),
            "the path must not contain empty, '.' or '..' segments",
        ),
    ]
    if cluster_scoped:
        rules.append(
            rule(
                on("pvc", _matches("self", _scheme("pvc") + "[^/]*:")),
                "a ClusterBaseModel must name the claim's namespace: pvc://{namespace}:{pvc-name}/{sub-path}",
            )
        )
    return rules


# --- spec.storage -----------------------------------------------------------------------------


def _param(name: str) -> str:
    # An empty parameter counts as absent, as in parse_storage_uri.
    return f"(has(self.parameters) && {_cel(name)} in self.parameters && self.parameters[{_cel(name)}] != '')"


def storage_rules() -> list[Rule]:
    """The rules that join `storageUri` with `parameters` or `key`, on the `storage` object."""

    def uri_rule(expression: str, problem: str) -> Rule:
        return _rule(
            expression,
            what="storage URI",
            subject="self.storageUri",
            problem=problem,
            field_path=".storageUri",
        )

    def on(scheme: str, expression: str) -> str:
        return _on_scheme("self.storageUri", scheme, expression)

    revision = "self.parameters['revision']"
    endpoint = "self.parameters['endpoint']"
    auth_types = "[" + ", ".join(_cel(t.value) for t in OciAuthType) + "]"
    allowed = ", ".join(t.value for t in OciAuthType)
    return [
        {
            "rule": "!has(self.key) || !has(self.storageKey) || self.key == self.storageKey",
            "message": "give the secret key as `key` or `storageKey`, not both",
        },
        uri_rule(
            on(
                "hf",
                f"self.storageUri.contains('@') || !{_param('revision')}"
                f" || {_matches(revision, f'^{_HF_REVISION}$')}"
                f" && !{_matches(revision, _BAD_REVISION)}",
            ),
            "the revision in parameters.revision is not a valid branch, tag or commit",
        ),
        uri_rule(
            on("s3", _implies(_param("endpoint"), _matches(endpoint, _HTTP_URL))),
            "parameters.endpoint must be an http:// or https:// URL",
        ),
        uri_rule(
            on(
                "oci",
                f"!{_param('auth_type')} || !{_param('authType')}"
                " || self.parameters['auth_type'] == self.parameters['authType']",
            ),
            "parameters.auth_type and parameters.authType disagree; give one",
        ),
        uri_rule(
            on(
                "oci",
                f"(!{_param('auth_type')} || self.parameters['auth_type'] in {auth_types})"
                f" && (!{_param('authType')} || self.parameters['authType'] in {auth_types})",
            ),
            f"the auth type in parameters is not one of: {allowed}",
        ),
    ]
