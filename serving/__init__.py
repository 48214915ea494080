"""Serving stage: the BentoML service that scores customers and cells and takes in events."""
