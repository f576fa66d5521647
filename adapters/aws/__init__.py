"""AWS backends (aiobotocore), template synthesis and deploy."""
