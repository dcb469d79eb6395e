"""The emulator's URL map: Stripe's paths -> ``_h_<endpoint>`` handlers of ``StripeServer``."""

from __future__ import annotations

from werkzeug.routing import Map, Rule


def build_routes() -> Map:
    r = [
        Rule("/v1/customers", methods=["POST"], endpoint="customer_create"),
        Rule("/v1/customers", methods=["GET"], endpoint="customer_list"),
        Rule("/v1/customers/search", methods=["GET"], endpoint="customer_search"),
        Rule("/v1/customers/<id_>", methods=["GET"], endpoint="customer_retrieve"),
        Rule("/v1/customers/<id_>", methods=["POST"], endpoint="customer_update"),
        Rule("/v1/customers/<id_>", methods=["DELETE"], endpoint="customer_delete"),
        Rule("/v1/invoiceitems", methods=["POST"], endpoint="invoiceitem_create"),
        Rule("/v1/invoiceitems", methods=["GET"], endpoint="invoiceitem_list"),
        Rule("/v1/invoiceitems/<id_>", methods=["GET"], endpoint="invoiceitem_retrieve"),
        Rule("/v1/invoiceitems/<id_>", methods=["POST"], endpoint="invoiceitem_update"),
        Rule("/v1/invoiceitems/<id_>", methods=["DELETE"], endpoint="invoiceitem_delete"),
        Rule("/v1/invoices", methods=["POST"], endpoint="invoice_create"),
        Rule("/v1/invoices", methods=["GET"], endpoint="invoice_list"),
        Rule("/v1/invoices/search", methods=["GET"], endpoint="invoice_search"),
        Rule("/v1/invoices/<id_>", methods=["GET"], endpoint="invoice_retrieve"),
        Rule("/v1/invoices/<id_>", methods=["POST"], endpoint="invoice_update"),
        Rule("/v1/invoices/<id_>", methods=["DELETE"], endpoint="invoice_delete"),
        Rule("/v1/invoices/<id_>/lines", methods=["GET"], endpoint="invoice_lines"),
        Rule("/v1/invoices/<id_>/finalize", methods=["POST"], endpoint="invoice_finalize"),
        Rule("/v1/invoices/<id_>/add_lines", methods=["POST"], endpoint="invoice_add_lines"),
        Rule("/v1/invoices/<id_>/pay", methods=["POST"], endpoint="invoice_pay"),
        Rule("/v1/invoices/<id_>/send", methods=["POST"], endpoint="invoice_send"),
        Rule("/v1/invoices/<id_>/void", methods=["POST"], endpoint="invoice_void"),
        Rule("/v1/invoices/<id_>/mark_uncollectible", methods=["POST"], endpoint="invoice_mark_uncollectible"),
        Rule("/v1/payment_intents", methods=["POST"], endpoint="payment_intent_create"),
        Rule("/v1/payment_intents", methods=["GET"], endpoint="payment_intent_list"),
        Rule("/v1/payment_intents/search", methods=["GET"], endpoint="payment_intent_search"),
        Rule("/v1/payment_intents/<id_>", methods=["GET"], endpoint="payment_intent_retrieve"),
        Rule("/v1/payment_intents/<id_>/confirm", methods=["POST"], endpoint="payment_intent_confirm"),
        Rule("/v1/payment_intents/<id_>/cancel", methods=["POST"], endpoint="payment_intent_cancel"),
        Rule("/v1/payment_methods", methods=["GET"], endpoint="payment_method_list"),
        Rule("/v1/payment_methods/<id_>", methods=["GET"], endpoint="payment_method_retrieve"),
        Rule("/v1/payment_methods/<id_>/attach", methods=["POST"], endpoint="payment_method_attach"),
        Rule("/v1/payment_methods/<id_>/detach", methods=["POST"], endpoint="payment_method_detach"),
        Rule("/v1/customers/<id_>/payment_methods", methods=["GET"], endpoint="customer_payment_methods"),
        Rule("/v1/credit_notes", methods=["POST"], endpoint="credit_note_create"),
        Rule("/v1/credit_notes", methods=["GET"], endpoint="credit_note_list"),
        Rule("/v1/credit_notes/<id_>", methods=["GET"], endpoint="credit_note_retrieve"),
        Rule("/_test/decline_next", methods=["POST"], endpoint="test_decline_next"),
        Rule("/_test/payment_intents/<id_>/settle", methods=["POST"], endpoint="test_settle"),
        Rule("/_hosted/invoices/<id_>", methods=["GET"], endpoint="hosted_invoice"),
        Rule("/_hosted/invoices/<id_>/pdf", methods=["GET"], endpoint="hosted_invoice_pdf"),
    ]
    return Map(r, strict_slashes=False)
