"""Parity with AWS: replay of executions recorded on real Step Functions, and a local TestState.

- :mod:`.replay`: ``ceap asl conformance`` over the recorded corpus.
- :mod:`.teststate`: the TestState API, run on the local interpreter.
"""
