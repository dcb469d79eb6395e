"""Invoice rendering: jinja2 templates + WeasyPrint. Data in, bytes (or messages) out.

* ``rendering.pdf``   -- ``render_invoice_html`` / ``render_invoice_pdf``
* ``rendering.email`` -- ``build_invoice_email`` / ``invoice_message_id``

Nothing here performs I/O beyond reading the package's own templates and assets.
"""

from billing_pipeline.rendering.seller import Seller

__all__ = ["Seller"]
