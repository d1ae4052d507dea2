"""The traditional_compatible router (kong/router/)."""
