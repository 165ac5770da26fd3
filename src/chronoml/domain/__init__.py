"""Pure domain logic: plain functions and dataclasses, no I/O imports."""
