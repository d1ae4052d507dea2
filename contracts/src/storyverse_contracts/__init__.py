"""The facts that cross a service boundary, defined once. Pure data and key builders: no third-party import, no
I/O, so every image carries it for free. Each service imports these names instead of keeping a copy, and
tests/test_layout.py fails if a service reaches into another service's package instead.

- ``keys``: the Redis keys more than one service reads or writes (sv-quota's counters, rate and abuse state, the
  rate limiting service's occasions and block index; the revocation keys the auth service writes and sv-jwt reads)
- ``identity``: the upstream identity headers the gateway sets (and strips from clients), the roles
- ``ratings``: age bands and content ratings (tokens carry them, sv-rbac and the backends compare them)
- ``tiers``: plan names a token's ``tier`` claim may carry (the numbers per plan are ``storyverse_plans``')
- ``errors``: the problem document's media type, the default code per status, and the codes several services emit
"""
