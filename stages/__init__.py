"""Business code of the CEAP stages and the domain model."""
