"""StoryVerse Kong plugins, written against Kong's Python PDK (kong-pdk)."""

__version__ = "0.1.0"

# Authentication, then authorization, then metering: the bands of Kong's own jwt (1450), acl (950),
# rate-limiting (910). sv-request-id runs first of all, like Kong's correlation-id (100001); sv-expand last, next
# to response-transformer (800), so aggregation only happens for authenticated, authorised, metered requests.
PRIORITIES = {
    "sv-request-id": 100001,
    "sv-jwt": 1450,
    "sv-rbac": 950,
    "sv-quota": 910,
    "sv-quota-log": 909,
    "sv-expand": 810,
}
