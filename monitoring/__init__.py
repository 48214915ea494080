"""Monitoring stage: drift and delayed-label performance reports and retraining triggers."""
