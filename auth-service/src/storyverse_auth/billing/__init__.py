"""Plans: a parent asks for a plan change, the billing provider confirms it with a signed webhook (issue 20)."""
