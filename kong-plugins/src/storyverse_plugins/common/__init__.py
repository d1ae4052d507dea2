"""Pieces every StoryVerse plugin shares: decisions, problem documents, identity hand-off, keys."""
