"""sv-request-id: one id per request, on the upstream request, the response and kong.ctx.shared."""
