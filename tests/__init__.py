"""Test helpers; see the modules for what each one serves."""
