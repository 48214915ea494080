"""closedloop stage: serving (see ARCHITECTURE.md)."""
