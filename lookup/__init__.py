"""lookup: find the order behind a masked Chinese mobile number."""
