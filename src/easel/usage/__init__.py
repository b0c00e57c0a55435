"""Usage records: one per generation request, written durably and summed for reports."""
