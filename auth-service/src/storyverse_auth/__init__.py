"""StoryVerse authentication service."""
