"""closedloop: a system of action for telecom operators."""

__version__ = "0.1.0"
