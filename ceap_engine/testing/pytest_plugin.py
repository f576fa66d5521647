"""The ceap pytest plugin: fixtures of the stage test kit."""
