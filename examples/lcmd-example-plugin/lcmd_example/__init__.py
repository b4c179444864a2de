"""An example third-party lcmd plugin: a character codec over the names of Unicode characters."""
