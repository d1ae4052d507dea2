"""Domain services: functions that add to the session and never commit (the view commits)."""
