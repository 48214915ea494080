"""closedloop stage: monitoring (see ARCHITECTURE.md)."""
