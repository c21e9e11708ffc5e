"""Op definitions: one ``Function`` per primitive, forward directly above backward."""
