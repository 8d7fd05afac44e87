"""``make bench``: sweeplab's costs measured side by side (``python -m sweeplab.bench``)."""
