"""Feature store stage: vendor normalisation, validation with quarantine, Feast definitions."""
