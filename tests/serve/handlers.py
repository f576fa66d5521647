"""Lambda handlers the test server serves with ``--function``."""


def echo(event, context):
    return {"echo": event, "function": context.function_name}
