"""The listeners nginx_kong.lua declares: proxy (HTTP/TLS) and the Status API (kong/api)."""
