"""STAND-IN ONLY: plays the stories, characters, universes and generation services for local runs and tests."""
