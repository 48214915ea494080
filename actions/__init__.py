"""closedloop stage: actions (see ARCHITECTURE.md)."""
