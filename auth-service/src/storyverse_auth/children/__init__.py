"""Child profiles (routes, service) and the parental controls tokens carry (controls: pure rules)."""
