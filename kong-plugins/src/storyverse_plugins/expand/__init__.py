"""sv-expand: response aggregation (`GET /api/v1/stories/{id}?expand=characters,universe`).

The story goes through Kong's normal proxy path (sv-jwt, sv-rbac, sv-quota ran in access); in the `response` phase the
plugin fetches the referenced resources from configured services in parallel, within a time budget, and answers the
story with them composed in, marking partial failures in the body.
"""
