"""The service's OpenAPI 3.1 document, generated from its routes, and ``/docs``.

A route exists only through its :class:`Operation`: :func:`add_operation` registers the
handler under the operation's method and path and keeps the operation beside the route;
:func:`described` walks ``app.router`` and raises :class:`UndescribedRouteError` for a
route that has none (the service builds its document that way when it starts, so an
undescribed route stops the start). :func:`openapi_document` renders the operations;
every schema comes from pydantic (``TypeAdapter.json_schemas`` with
``ref_template="#/components/schemas/{model}"``), so the document cannot drift from what
the service validates and answers.

:func:`docs_page` renders that document as one self-contained HTML page: no script, no
external asset; its only style sheet is inline and allowed by the page's
Content-Security-Policy through its hash (:data:`DOCS_CSP`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import TypeAdapter

from lookup.service.problems import PROBLEM_JSON, PROBLEMS, Problem

__all__ = [
    "DOCS_CSP",
    "Operation",
    "UndescribedRouteError",
    "add_operation",
    "described",
    "docs_page",
    "openapi_document",
]

_REF: Final = "#/components/schemas/{model}"
_STYLE: Final = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}code,td.t{font-family:ui-monospace,monospace;font-size:13px}"
    "table{border-collapse:collapse;margin:.4rem 0 1rem}td,th{border:1px solid #ccc;"
    "padding:.2rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}"
    ".m{display:inline-block;min-width:3.5rem;font-weight:bold}h2{margin-top:2.2rem}"
)
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
DOCS_CSP: Final = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
"""The ``Content-Security-Policy`` of ``/docs``: nothing but its own inline style."""


@dataclass(frozen=True)
class Operation:
    """One route of the service, as the document describes it.

    ``request`` is the JSON body's model; ``request_content`` other media types of the
    body (media type -> a type, a JSON schema, or ``{}`` for bytes of that type, which
    OpenAPI 3.1 writes without a schema). ``response`` is the model of the ``status``
    answer in ``response_type``; ``response_also`` more media types of that answer (the
    same way), ``no_content`` other success statuses without a body (204). A parameter's
    ``schema`` may be a type too. ``problems`` are
    the error statuses beyond the ones every route may answer (400, 500; 401 with a token).
    """

    method: str
    path: str
    summary: str
    description: str = ""
    request: type[Any] | None = None
    response: type[Any] | None = None
    response_type: str = "application/json"
    problems: tuple[int, ...] = ()
    public: bool = False
    parameters: tuple[dict[str, Any], ...] = field(default=())
    request_content: Mapping[str, Any] = field(default_factory=dict)
    response_also: Mapping[str, Any] = field(default_factory=dict)
    status: int = 200
    no_content: tuple[int, ...] = ()
    operation_id: str | None = None


class UndescribedRouteError(RuntimeError):
    """A route of the app was added without its :class:`Operation`."""


_OPERATIONS: Final = web.AppKey("lookup_operations", dict[tuple[str, str], Operation])


def add_operation(app: web.Application, op: Operation, handler: Handler) -> None:
    """Register ``handler`` as the route of ``op`` (a GET also answers HEAD)."""
    ops = app.get(_OPERATIONS)
    if ops is None:
        ops = app[_OPERATIONS] = {}
    if (op.method, op.path) in ops:
        raise ValueError(f"{op.method} {op.path} is described twice")
    ops[(op.method, op.path)] = op
    if op.method == "GET":
        app.router.add_get(op.path, handler)
    else:
        app.router.add_route(op.method, op.path, handler)


def described(app: web.Application) -> list[Operation]:
    """The operation of every route of ``app``, in the order the routes were added.

    :raises UndescribedRouteError: a route was added without an operation.
    """
    ops = app.get(_OPERATIONS, {})
    found: list[Operation] = []
    missing: list[str] = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp's automatic HEAD of a GET
        resource = route.resource
        path = resource.canonical if resource is not None else "?"
        op = ops.get((route.method, path))
        if op is None:
            missing.append(f"{route.method} {path}")
        else:
            found.append(op)
    if missing:
        raise UndescribedRouteError(
            "routes without an operation (add them with add_operation): " + ", ".join(missing)
        )
    return found


def openapi_document(
    operations: Sequence[Operation], *, title: str, version: str, description: str = ""
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (a JSON-serialisable dict)."""
    inputs: list[tuple[str, Any, TypeAdapter[Any]]] = [
        ("Problem", "serialization", TypeAdapter(Problem))
    ]
    for op in operations:
        for param in op.parameters:
            if not isinstance(param["schema"], dict):  # a type: its schema, named
                key = f"{op.method} {op.path} {param['name']}"
                inputs.append((key, "validation", TypeAdapter(param["schema"])))
        for kind, sub in op.request_content.items():
            if not isinstance(sub, dict):
                inputs.append((f"{op.method} {op.path} in {kind}", "validation", TypeAdapter(sub)))
        for kind, sub in op.response_also.items():
            if not isinstance(sub, dict):
                key = f"{op.method} {op.path} out {kind}"
                inputs.append((key, "serialization", TypeAdapter(sub)))
        if op.request is not None:
            inputs.append((f"{op.method} {op.path} in", "validation", TypeAdapter(op.request)))
        if op.response is not None:
            inputs.append((f"{op.method} {op.path} out", "serialization",
                           TypeAdapter(op.response)))  # fmt: skip
    refs, defs = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    schema = {key: value for (key, _mode), value in refs.items()}
    problem = {PROBLEM_JSON: {"schema": schema["Problem"]}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op)}
        if op.description:
            entry["description"] = op.description
        if op.parameters:
            entry["parameters"] = [
                p if isinstance(p["schema"], dict)
                else {**p, "schema": schema[f"{op.method} {op.path} {p['name']}"]}
                for p in op.parameters
            ]
        body: dict[str, Any] = {}
        if op.request is not None:
            body["application/json"] = {"schema": schema[f"{op.method} {op.path} in"]}
        for kind, sub in op.request_content.items():
            body[kind] = _media(sub, schema, f"{op.method} {op.path} in {kind}")
        if body:
            entry["requestBody"] = {"required": True, "content": body}
        ok: dict[str, Any] = {"description": _SUCCESS.get(op.status, "OK")}
        content: dict[str, Any] = {}
        if op.response is not None:
            content[op.response_type] = {"schema": schema[f"{op.method} {op.path} out"]}
        elif op.response_type != "application/json":
            content[op.response_type] = {"schema": {"type": "string"}}
        for kind, sub in op.response_also.items():
            content[kind] = _media(sub, schema, f"{op.method} {op.path} out {kind}")
        if content:
            ok["content"] = content
        responses: dict[str, Any] = {str(op.status): ok}
        for status in op.no_content:
            responses[str(status)] = {"description": _SUCCESS.get(status, "No content")}
        statuses = set(op.problems) | {400, 500}
        if not op.public:
            statuses.add(401)
        for status in sorted(statuses):
            kinds = [p for p in PROBLEMS.values() if p.status == status]
            text = "; ".join(f"{p.title}: {p.when}" for p in kinds) or "error"
            responses[str(status)] = {"description": text, "content": problem}
        entry["responses"] = responses
        entry["security"] = [] if op.public else [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


_SUCCESS: Final = {200: "OK", 201: "Created", 204: "No content"}


def _media(sub: Any, schema: dict[str, Any], key: str) -> dict[str, Any]:
    """A media type object: a type's schema by its key, a schema, or none (``{}``)."""
    if not isinstance(sub, dict):
        return {"schema": schema[key]}
    return {"schema": sub} if sub else {}


def _operation_id(op: Operation) -> str:
    if op.operation_id:
        return op.operation_id
    words = [w.strip("{}") for w in op.path.strip("/").replace(".", "_").split("/") if w]
    return "_".join([op.method.lower(), *words]) or op.method.lower()


# -- the page --------------------------------------------------------------------------------

_e = html.escape


def _type(schema: dict[str, Any]) -> str:
    """A short HTML rendering of a JSON schema's type."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(_e(json.dumps(v, ensure_ascii=False)) for v in schema["enum"])
    if "const" in schema:
        return _e(json.dumps(schema["const"], ensure_ascii=False))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"object of {_type(extra) if isinstance(extra, dict) else 'any'}"
    return _e(str(kind))


def _limits(schema: dict[str, Any]) -> str:
    keys = ("minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "default")
    parts = [f"{k}: {json.dumps(schema[k], ensure_ascii=False)}" for k in keys if k in schema]
    return _e(", ".join(parts))


def _schema_table(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f'<h3 id="schema-{_e(name)}">{_e(name)}</h3>']
    if schema.get("description"):
        out.append(f"<p>{_e(schema['description'])}</p>")
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        out.append(f"<p>{_type(schema)}</p>")
        return out
    required = set(schema.get("required", ()))
    out.append("<table><tr><th>field</th><th>type</th><th>required</th><th>limits</th>"
               "<th>description</th></tr>")  # fmt: skip
    for prop, sub in props.items():
        out.append(
            f'<tr><td class="t">{_e(prop)}</td><td>{_type(sub)}</td>'
            f"<td>{'yes' if prop in required else ''}</td><td>{_limits(sub)}</td>"
            f"<td>{_e(sub.get('description', ''))}</td></tr>"
        )
    out.append("</table>")
    return out


def _content_types(content: dict[str, Any]) -> str:
    return ", ".join(
        f"<code>{_e(ctype)}</code> {_type(spec.get('schema', {}))}"
        for ctype, spec in content.items()
    )


def docs_page(document: dict[str, Any]) -> str:
    """``document`` as one readable HTML page (paths, methods, bodies, answers, schemas)."""
    info = document["info"]
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(info['title'])} {_e(info['version'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(info['title'])} <small>{_e(info['version'])}</small></h1>",
        f"<p>{_e(info.get('description', ''))}</p>",
        '<p>The same as JSON: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Routes '
        + "marked <em>token</em> need <code>Authorization: Bearer &lt;token&gt;</code>.</p>",
        "<h2>Routes</h2>",
    ]
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            auth = "open" if op.get("security") == [] else "token"
            out.append(
                f'<h3 id="{_e(op["operationId"])}"><span class="m">{_e(method.upper())}</span>'
                f" <code>{_e(path)}</code> <small>({auth})</small></h3>"
            )
            out.append(f"<p>{_e(op['summary'])}</p>")
            if op.get("description"):
                out.append(f"<p>{_e(op['description'])}</p>")
            if "requestBody" in op:
                out.append(f"<p>Body: {_content_types(op['requestBody']['content'])}</p>")
            out.append("<table><tr><th>status</th><th>answer</th><th>when</th></tr>")
            for status, resp in op["responses"].items():
                out.append(
                    f"<tr><td>{_e(status)}</td><td>{_content_types(resp.get('content', {}))}"
                    f"</td><td>{_e(resp['description'])}</td></tr>"
                )
            out.append("</table>")
    out.append("<h2>Problems</h2><p>Every error is <code>application/problem+json</code> "
               "(RFC 9457); its <code>type</code> links here.</p>")  # fmt: skip
    out.append("<table><tr><th>type</th><th>status</th><th>title</th><th>when</th></tr>")
    for p in PROBLEMS.values():
        out.append(
            f'<tr id="problem-{_e(p.slug)}"><td class="t">{_e(p.uri)}</td><td>{p.status}</td>'
            f"<td>{_e(p.title)}</td><td>{_e(p.when)}</td></tr>"
        )
    out.append("</table><h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        out.extend(_schema_table(name, schema))
    out.append("</body></html>")
    return "\n".join(out)
