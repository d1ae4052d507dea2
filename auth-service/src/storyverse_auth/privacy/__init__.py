"""Privacy: consent withdrawal, the family's data export, parent account deletion with a grace period (issue 20)."""
