"""Accounts, roles and what each role may do; sessions and API tokens."""
