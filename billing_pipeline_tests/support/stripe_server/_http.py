"""The emulator's HTTP layer: WSGI entry, auth, faults, Idempotency-Key semantics, hosted pages."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from ._common import (
    DEFAULT_API_VERSION,
    RequestRecord,
    StripeHTTPError,
    _Disconnect,
    _Fault,
    _rand_id,
    _tiny_pdf,
    invalid,
    parse_form,
)


class HTTPLayer:
    """Mixed into ``StripeServer``: request handling up to the ``_h_*`` handlers."""

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            response = self._handle(request)
        except _Disconnect:
            sock = environ.get("werkzeug.socket")
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            response = Response(b"", status=500, headers={"Connection": "close"})
        return response(environ, start_response)

    def _json(self, status: int, body: Any, headers: dict | None = None, version: str | None = None) -> Response:
        h = {
            "Request-Id": _rand_id("req_", 14),
            "Stripe-Version": version or DEFAULT_API_VERSION,
            "Cache-Control": "no-cache, no-store",
            "Access-Control-Allow-Origin": "*",
        }
        h.update(headers or {})
        return Response(json.dumps(body, separators=(",", ":")), status=status, headers=h, mimetype="application/json")

    def _error(self, e: StripeHTTPError, version: str | None = None) -> Response:
        return self._json(e.status, {"error": e.body}, e.headers, version)

    def _handle(self, request: Request) -> Response:
        record = {
            "method": request.method.upper(),
            "path": request.path,
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "stripe_version": request.headers.get("Stripe-Version"),
            "time": self.clock(),
            "status": None,
            "replayed": False,
            "fault": None,
        }
        with self._lock:
            self.requests.append(RequestRecord(record["method"], record["path"], record["idempotency_key"]))
            self.request_log.append(record)
        resp = self._respond(request, record)
        record["status"] = resp.status_code
        return resp

    def _respond(self, request: Request, record: dict) -> Response:
        method, path, version = record["method"], record["path"], record["stripe_version"]
        if self._down_mode == "refuse":
            record["fault"] = "refused"
            raise _Disconnect()
        if self._down_mode == "503":
            record["fault"] = "down"
            return self._error(StripeHTTPError(503, "api_error", "Service unavailable (server.down())."), version)
        if path.startswith("/_hosted/"):
            return self._dispatch_hosted(request)
        try:
            api_key = self._authenticate(request)
            if isinstance(api_key, StripeHTTPError):
                raise api_key
            endpoint, args = self._route(request, method, path)
            pairs = self._form_pairs(request, method)
            params = parse_form(pairs)
        except StripeHTTPError as e:
            return self._error(e, version)
        fault = self._take_fault(method, path)
        if fault and not fault.after:
            record["fault"] = "disconnect" if fault.disconnect else fault.status
            if fault.disconnect:
                raise _Disconnect()
            return self._fault_response(fault, version)
        idem_key = record["idempotency_key"]
        if method == "POST" and idem_key is not None:  # idempotency: POST only, like Stripe
            resp = self._idempotent((api_key, idem_key), record, sorted(pairs), endpoint, args, params)
        else:
            resp = self._run(endpoint, args, params, version)[0]
        if fault and fault.after:  # executed (and saved), then the answer is lost
            record["fault"] = ("disconnect" if fault.disconnect else fault.status, "after")
            if fault.disconnect:
                raise _Disconnect()
            return self._fault_response(fault, version)
        return resp

    def _route(self, request: Request, method: str, path: str) -> tuple[str, dict]:
        try:
            return self._url_map.bind_to_environ(request.environ).match(path, method=method)
        except (NotFound, MethodNotAllowed):
            raise invalid(
                f"Unrecognized request URL ({method}: {path}). "
                "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                status=404,
            ) from None
        except HTTPException as e:  # pragma: no cover
            raise invalid(str(e), status=404) from None

    @staticmethod
    def _form_pairs(request: Request, method: str) -> list[tuple[str, str]]:
        if method != "POST":
            return list(request.args.items(multi=True))
        ctype = request.mimetype
        if ctype and ctype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise invalid(
                f"Invalid request: unsupported Content-Type {ctype}. If error persists and you "
                f"need assistance, please contact support@stripe.com."
            )
        pairs = list(request.form.items(multi=True))
        return list(request.args.items(multi=True)) + pairs if request.args else pairs

    def _run(self, endpoint: str, args: dict, params: dict, version: str | None) -> tuple[Response, int, Any, bool]:
        if self.latency:  # simulated processing time (an in-flight idempotent request answers 409 meanwhile)
            time.sleep(self.latency)
        status, body, saved_flag, extra_headers = self._execute(endpoint, args, params)
        return self._json(status, body, extra_headers, version), status, body, saved_flag

    def _idempotent(
        self, store_key: tuple[str, str], record: dict, fingerprint: list, endpoint: str, args: dict, params: dict
    ) -> Response:
        """Stripe's Idempotency-Key: replay the saved answer (same endpoint and parameters), refuse a
        reuse with others (400 ``idempotency_error``) or while the first is in flight (409), else run
        and save the answer (validation errors are not saved)."""
        method, path, version = record["method"], record["path"], record["stripe_version"]
        idem_key = store_key[1]
        if len(idem_key) > 255:
            return self._error(
                invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key"), version
            )
        with self._lock:
            saved = self._idempotency.get(store_key)
        if saved is not None:
            mismatch = self._idempotency_mismatch(saved, method, path, fingerprint, idem_key)
            if mismatch is not None:
                return self._error(mismatch, version)
            record["replayed"] = True
            headers = {
                "Idempotent-Replayed": "true",
                "Original-Request": saved["request_id"],
                "Idempotency-Key": idem_key,
            }
            return self._json(saved["status"], saved["body"], headers, version)
        with self._inflight_lock:
            if store_key in self._inflight:
                return self._error(
                    StripeHTTPError(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this Stripe-Idempotency-Key. "
                        "Please try again later.",
                        code="idempotency_key_in_use",
                    ),
                    version,
                )
            self._inflight.add(store_key)
        try:
            resp, status, body, saved_flag = self._run(endpoint, args, params, version)
            resp.headers["Idempotency-Key"] = idem_key
            if saved_flag:
                with self._lock:
                    self._idempotency[store_key] = {
                        "method": method,
                        "path": path,
                        "fingerprint": fingerprint,
                        "status": status,
                        "body": body,
                        "request_id": resp.headers["Request-Id"],
                    }
        finally:
            with self._inflight_lock:
                self._inflight.discard(store_key)
        return resp

    @staticmethod
    def _idempotency_mismatch(
        saved: dict, method: str, path: str, fingerprint: list, idem_key: str
    ) -> StripeHTTPError | None:
        if saved["path"] != path or saved["method"] != method:
            return StripeHTTPError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used for the same endpoint they were "
                f"first used for ('{saved['method']} {saved['path']}' vs '{method} {path}'). "
                f"Try using a key other than '{idem_key}' if you meant to execute a different request.",
            )
        if saved["fingerprint"] != fingerprint:
            return StripeHTTPError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{idem_key}' if you meant to "
                "execute a different request.",
            )
        return None

    def _execute(self, endpoint: str, args: dict, params: dict) -> tuple[int, Any, bool, dict]:
        handler = getattr(self, "_h_" + endpoint)
        with self._lock:
            try:
                self._settle_due()
                body = handler(params, **args)
                return 200, body, True, {}
            except StripeHTTPError as e:
                return e.status, {"error": e.body}, e.saved, e.headers
            except Exception as e:  # an emulator bug: surface like Stripe's 500 (and save it, as Stripe does)
                return 500, {"error": {"type": "api_error", "message": f"Internal emulator error: {e!r}"}}, True, {}

    def _authenticate(self, request: Request) -> str | StripeHTTPError:
        auth = request.headers.get("Authorization", "")
        key = None
        if auth.startswith("Bearer "):
            key = auth[7:].strip()
        elif auth.startswith("Basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except Exception:
                key = ""
        if not key:
            return StripeHTTPError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#"
                "authentication for details, or we can help at https://support.stripe.com/.",
            )
        if key not in self.api_keys:
            masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)
            return StripeHTTPError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")
        return key

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if (f.path_prefix is None or path.startswith(f.path_prefix)) and (
                    f.method is None or f.method == method
                ):
                    return self._faults.pop(i)
        return None

    def _fault_response(self, f: _Fault, version: str | None) -> Response:
        status = f.status or 500
        headers = {}
        if f.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if f.should_retry else "false"
        if status == 429:
            err = StripeHTTPError(
                429,
                "invalid_request_error",
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                code="rate_limit",
                headers=headers,
            )
        elif status == 409:
            err = StripeHTTPError(
                409,
                "invalid_request_error",
                "This object cannot be accessed right now because another API request or Stripe "
                "process is currently accessing it.",
                code="lock_timeout",
                headers=headers,
            )
        elif status >= 500:
            err = StripeHTTPError(
                status, "api_error", f"Injected fault: HTTP {status} (server.fail_next).", headers=headers
            )
        else:
            err = StripeHTTPError(status, "invalid_request_error", f"Injected fault: HTTP {status}.", headers=headers)
        return self._error(err, version)

    def _dispatch_hosted(self, request: Request) -> Response:
        m = re.match(r"^/_hosted/invoices/([^/]+)(/pdf)?$", request.path)
        inv = self.invoices.get(m.group(1)) if m else None
        if inv is None or inv["status"] == "draft":
            return Response("Not found", status=404)
        view = self._render("invoices", inv)
        if m.group(2):
            text = f"Invoice {view['number']} total {view['total']} {view['currency']}"
            pdf = _tiny_pdf(text)
            return Response(pdf, mimetype="application/pdf")
        return Response(
            f"<html><body><h1>Invoice {view['number']}</h1><p>Amount due: {view['amount_due']} "
            f"{view['currency']}</p><p>Status: {view['status']}</p></body></html>",
            mimetype="text/html",
        )
