"""How agents work together through the gateway: workflows, record locks, duplicates, rates, suspension.

Everything here is kept in the database (or, for rates, counted in process and shared through
it), so every replica sees the same workflows, locks and suspensions; nothing depends on which
process a request reaches.
"""
