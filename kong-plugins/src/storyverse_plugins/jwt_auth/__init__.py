"""sv-jwt: verify the bearer access token at the edge, strip spoofed identity headers, hand identity on; fail closed."""
