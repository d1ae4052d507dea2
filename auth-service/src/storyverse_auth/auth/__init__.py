"""Accounts: register, login, refresh, logout, me (routes); registration and authentication (accounts), the
brute-force back-off (throttle), equal response times (timing) and the bearer check of the service's own endpoints
(bearer)."""
