"""Names that must reach every output as plain text: HTML, Matplotlib mathtext, an HTML entity."""

SCRIPT = "<script>alert(1)</script>"
TRICKY_NAME = f"{SCRIPT} $x$ 50 %"
ESCALE = "Escale &amp; CO"
