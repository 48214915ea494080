"""closedloop stage: features (see ARCHITECTURE.md)."""
