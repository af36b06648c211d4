"""Jobs: one input file to all its outputs, and many inputs in a batch, local or on Ray."""
