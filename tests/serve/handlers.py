"""Lambda handlers the test server serves with ``--function``."""


def echo(event, context):
    return {"echo": event, "function": context.function_name}


def mark(event, context):
    """Leave a file per call, so a test sees how often an execution really ran."""
    import pathlib
    import uuid

    folder = pathlib.Path(event["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{uuid.uuid4().hex}.run").write_text("ran")
    return {"marked": True}
