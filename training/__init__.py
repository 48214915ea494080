"""closedloop stage: training (see ARCHITECTURE.md)."""
