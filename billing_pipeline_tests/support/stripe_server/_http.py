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
        method, path = request.method.upper(), request.path
        idem_key = request.headers.get("Idempotency-Key")
        version = request.headers.get("Stripe-Version")
        record = {
            "method": method,
            "path": path,
            "idempotency_key": idem_key,
            "stripe_version": version,
            "time": self.clock(),
            "status": None,
            "replayed": False,
            "fault": None,
        }
        with self._lock:
            self.requests.append(RequestRecord(method, path, idem_key))
            self.request_log.append(record)

        def done(resp: Response) -> Response:
            record["status"] = resp.status_code
            return resp

        if self._down_mode == "refuse":
            record["fault"] = "refused"
            raise _Disconnect()
        if self._down_mode == "503":
            record["fault"] = "down"
            return done(self._error(StripeHTTPError(503, "api_error", "Service unavailable (server.down())."), version))

        if path.startswith("/_hosted/"):
            return done(self._dispatch_hosted(request))

        # ---- auth
        api_key = self._authenticate(request)
        if isinstance(api_key, StripeHTTPError):
            return done(self._error(api_key, version))

        # ---- routing
        try:
            endpoint, args = self._url_map.bind_to_environ(request.environ).match(path, method=method)
        except (NotFound, MethodNotAllowed):
            return done(
                self._error(
                    invalid(
                        f"Unrecognized request URL ({method}: {path}). "
                        "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                        status=404,
                    ),
                    version,
                )
            )
        except HTTPException as e:  # pragma: no cover
            return done(self._error(invalid(str(e), status=404), version))

        # ---- parameters
        try:
            if method == "POST":
                ctype = request.mimetype
                if ctype and ctype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
                    raise invalid(
                        f"Invalid request: unsupported Content-Type {ctype}. If error persists and you "
                        f"need assistance, please contact support@stripe.com."
                    )
                pairs = list(request.form.items(multi=True))
                if request.args:
                    pairs = list(request.args.items(multi=True)) + pairs
            else:
                pairs = list(request.args.items(multi=True))
            params = parse_form(pairs)
        except StripeHTTPError as e:
            return done(self._error(e, version))

        # ---- injected faults (before execution)
        fault = self._take_fault(method, path)
        if fault and not fault.after:
            record["fault"] = "disconnect" if fault.disconnect else fault.status
            if fault.disconnect:
                raise _Disconnect()
            return done(self._fault_response(fault, version))

        # ---- idempotency (POST only, like Stripe)
        use_idem = method == "POST" and idem_key is not None
        if use_idem:
            if len(idem_key) > 255:
                return done(
                    self._error(
                        invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key"),
                        version,
                    )
                )
            store_key = (api_key, idem_key)
            fingerprint = sorted(pairs)
            with self._lock:
                saved = self._idempotency.get(store_key)
            if saved is not None:
                if saved["path"] != path or saved["method"] != method:
                    return done(
                        self._error(
                            StripeHTTPError(
                                400,
                                "idempotency_error",
                                "Keys for idempotent requests can only be used for the same endpoint they were "
                                f"first used for ('{saved['method']} {saved['path']}' vs '{method} {path}'). "
                                f"Try using a key other than '{idem_key}' if you meant to execute a different request.",
                            ),
                            version,
                        )
                    )
                if saved["fingerprint"] != fingerprint:
                    return done(
                        self._error(
                            StripeHTTPError(
                                400,
                                "idempotency_error",
                                "Keys for idempotent requests can only be used with the same parameters they "
                                f"were first used with. Try using a key other than '{idem_key}' if you meant to "
                                "execute a different request.",
                            ),
                            version,
                        )
                    )
                record["replayed"] = True
                headers = {
                    "Idempotent-Replayed": "true",
                    "Original-Request": saved["request_id"],
                    "Idempotency-Key": idem_key,
                }
                resp = self._json(saved["status"], saved["body"], headers, version)
                if fault and fault.after:  # pragma: no cover - unusual combination
                    return done(self._fault_response(fault, version))
                return done(resp)
            with self._inflight_lock:
                if store_key in self._inflight:
                    return done(
                        self._error(
                            StripeHTTPError(
                                409,
                                "idempotency_error",
                                "There is currently another in-progress request using this Stripe-Idempotency-Key. "
                                "Please try again later.",
                                code="idempotency_key_in_use",
                            ),
                            version,
                        )
                    )
                self._inflight.add(store_key)
        try:
            if self.latency:  # simulated processing time (an in-flight idempotent request answers 409 meanwhile)
                time.sleep(self.latency)
            status, body, saved_flag, extra_headers = self._execute(endpoint, args, params)
            resp = self._json(status, body, extra_headers, version)
            if use_idem:
                resp.headers["Idempotency-Key"] = idem_key
                if saved_flag:
                    with self._lock:
                        self._idempotency[(api_key, idem_key)] = {
                            "method": method,
                            "path": path,
                            "fingerprint": fingerprint,
                            "status": status,
                            "body": body,
                            "request_id": resp.headers["Request-Id"],
                        }
        finally:
            if use_idem:
                with self._inflight_lock:
                    self._inflight.discard((api_key, idem_key))
        if fault and fault.after:
            record["fault"] = ("disconnect" if fault.disconnect else fault.status, "after")
            if fault.disconnect:
                raise _Disconnect()
            return done(self._fault_response(fault, version))
        return done(resp)

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
