"""The synthetic telco world: a deterministic simulator that is both the demo and the test bed."""
