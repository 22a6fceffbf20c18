"""Rules kept as data: threshold, rate of change, silence, event count and plan target, evaluated on the stream."""
