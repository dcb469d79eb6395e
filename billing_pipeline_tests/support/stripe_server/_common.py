"""Request parsing, errors, search and small helpers shared by the Stripe emulator's modules."""

from __future__ import annotations

import random
import re
import secrets
import string
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, NamedTuple

ROUNDING = ROUND_HALF_UP
DEFAULT_API_VERSION = "2026-10-28.endive"
_ALNUM = string.ascii_letters + string.digits
_ids = random.Random(secrets.randbits(64))  # object ids: unique enough, and cheap (no syscall per character)


def _rand_id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(_ids.choices(_ALNUM, k=n))


class RequestRecord(NamedTuple):
    method: str
    path: str
    idempotency_key: str | None


class StripeHTTPError(Exception):
    """An error response in Stripe's shape.  ``saved`` = kept by the idempotency layer."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
        saved: bool | None = None,
        headers: dict | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param
        self.body.update(extra)
        # validation errors (400/404) happen before the endpoint executes => not saved
        self.saved = saved if saved is not None else status not in (400, 401, 404, 409, 429)
        self.headers = headers or {}


def invalid(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> StripeHTTPError:
    return StripeHTTPError(status, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, id_: str, param: str = "id") -> StripeHTTPError:
    return StripeHTTPError(
        404, "invalid_request_error", f"No such {kind}: '{id_}'", code="resource_missing", param=param
    )


# --------------------------------------------------------------------------- params
def parse_form(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracket notation (``metadata[k]=v``, ``expand[0]=x``, ``a[b][c]=d``)."""
    root: dict[str, Any] = {}
    for key, value in items:
        m = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", key)
        if not m:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # a[]=x -> append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[part] = nxt
                node = nxt
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
        return node
    return node


def _int(params: dict, name: str, default: Any = None, *, minimum: int | None = None) -> Any:
    if name not in params or params[name] is None:
        return default
    v = params[name]
    try:
        i = int(v)
        if str(i) != str(v).strip().lstrip("+"):
            raise ValueError
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {v}", param=name) from None
    if minimum is not None and i < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.", param=name)
    return i


def _decimal(params: dict, name: str, default: Any = None) -> Any:
    if name not in params or params[name] in (None, ""):
        return default
    try:
        d = Decimal(str(params[name]))
        if not d.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise invalid(f"Invalid decimal: {params[name]}", param=name) from None
    return d


def _bool(params: dict, name: str, default: Any = None) -> Any:
    if name not in params:
        return default
    v = str(params[name]).lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise invalid(f"Invalid boolean: {params[name]}", param=name)


def _enum(params: dict, name: str, allowed: tuple[str, ...], default: Any = None) -> Any:
    if name not in params:
        return default
    v = params[name]
    if v not in allowed:
        raise invalid(f"Invalid {name}: must be one of {', '.join(allowed)}", param=name)
    return v


def _str(params: dict, name: str, default: Any = None) -> Any:
    if name not in params:
        return default
    v = params[name]
    if isinstance(v, (dict, list)):
        raise invalid(f"Invalid string: {name}", param=name)
    return v if v != "" else None


def _check_known(params: dict, allowed: set[str]) -> None:
    for k in params:
        if k not in allowed and k != "expand":
            raise invalid(f"Received unknown parameter: {k}", param=k, code="parameter_unknown")


def _apply_metadata(current: dict, new: Any, param: str = "metadata") -> dict:
    if new is None:
        return current
    if new == "":
        return {}
    if not isinstance(new, dict):
        raise invalid("Invalid object", param=param)
    out = dict(current)
    for k, v in new.items():
        if len(k) > 40:
            raise invalid("Metadata keys can have up to 40 characters.", param=f"{param}[{k}]")
        if v == "" or v is None:
            out.pop(k, None)
        else:
            if len(str(v)) > 500:
                raise invalid("Metadata values can have up to 500 characters.", param=f"{param}[{k}]")
            out[k] = str(v)
    if len(out) > 50:
        raise invalid("Metadata can have up to 50 keys.", param=param)
    return out


# --------------------------------------------------------------------------- search
_CLAUSE_RE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>[a-z_]+)(?:\[(?:'(?P<k1>[^']*)'|"(?P<k2>[^"]*)")\])?\s*"""
    r"""(?P<op>>=|<=|:|~|>|<)\s*"""
    r"""(?:'(?P<v1>(?:[^'\\]|\\.)*)'|"(?P<v2>(?:[^"\\]|\\.)*)"|(?P<num>-?\d+(?:\.\d+)?)|(?P<null>null))"""
)
_JOIN_RE = re.compile(r"\s+(AND|OR)\s+|\s+(?=-?[a-z_]+[\[:~<>])")


def parse_search(query: str, fields: set[str], resource: str) -> tuple[str, list[dict]]:
    if not query or not query.strip():
        raise invalid("Missing required param: query.", param="query")
    pos, clauses, joins = 0, [], set()
    q = query.strip()
    while True:
        m = _CLAUSE_RE.match(q, pos)
        if not m:
            raise invalid(
                f"We were unable to parse your search query. Error near: '{q[pos : pos + 20]}'", param="query"
            )
        field = m.group("field")
        if field not in fields:
            raise invalid(
                f"Field `{field}` is an unsupported search field for resource `{resource}`. "
                f"See http://stripe.com/docs/search#query-fields-for-{resource} for a list of supported fields.",
                param="query",
            )
        key = m.group("k1") if m.group("k1") is not None else m.group("k2")
        if field == "metadata" and key is None:
            raise invalid("metadata must be queried as metadata['key']", param="query")
        value: Any
        if m.group("null"):
            value = None
        elif m.group("num") is not None:
            value = Decimal(m.group("num"))
        else:
            raw = m.group("v1") if m.group("v1") is not None else m.group("v2")
            value = re.sub(r"\\(.)", r"\1", raw)
        if m.group("op") == "~" and (not isinstance(value, str) or len(value) < 3):
            raise invalid("Substring matching (~) requires a string of at least 3 characters.", param="query")
        clauses.append({"neg": bool(m.group("neg")), "field": field, "key": key, "op": m.group("op"), "value": value})
        pos = m.end()
        if pos >= len(q):
            break
        j = _JOIN_RE.match(q, pos)
        if not j:
            raise invalid(
                f"We were unable to parse your search query. Error near: '{q[pos : pos + 20]}'", param="query"
            )
        joins.add(j.group(1) or "AND")
        pos = j.end()
    if len(joins) > 1:
        raise invalid("Search queries cannot mix AND and OR.", param="query")
    if len(clauses) > 10:
        raise invalid("Search queries can have at most 10 clauses.", param="query")
    return (joins.pop() if joins else "AND"), clauses


def _clause_matches(obj: dict, c: dict) -> bool:
    if c["field"] == "metadata":
        actual = (obj.get("metadata") or {}).get(c["key"])
        case_sensitive = True
    else:
        actual = obj.get(c["field"])
        case_sensitive = False
    v = c["value"]
    op = c["op"]
    if v is None:
        res = actual is None
    elif op in (">", "<", ">=", "<="):
        try:
            a = Decimal(str(actual))
            b = Decimal(str(v))
        except (InvalidOperation, TypeError):
            return False
        res = {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
    elif actual is None:
        res = False
    else:
        a, b = str(actual), str(v)
        if isinstance(v, Decimal):
            try:
                res = Decimal(a) == v
            except InvalidOperation:
                res = False
        else:
            if not case_sensitive:
                a, b = a.lower(), b.lower()
            res = (b in a) if op == "~" else (a == b)
    return not res if c["neg"] else res


class _Disconnect(Exception):
    pass


def _dec_str(d: Decimal) -> str:
    s = format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _created_match(value: Any, cond: Any) -> bool:
    if value is None:
        return False
    if isinstance(cond, dict):
        ops = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }
        return all(ops[k](value, int(v)) for k, v in cond.items() if k in ops)
    return value == int(cond)


def _tiny_pdf(text: str) -> bytes:
    text = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


class _Fault(NamedTuple):
    status: int | None
    path_prefix: str | None
    method: str | None
    after: bool
    disconnect: bool
    should_retry: bool | None
