"""Helpers Kong keeps in kong/tools/ and kong/error_handlers.lua (error templates)."""
