"""Action stage: policy, guards and budgets, approvals, the idempotent ledger, adapters, audit."""
