"""Where AWS calls go: region, profile and endpoint, and the aiobotocore clients made from them.

Credentials and region come from the usual chain (environment, ``--profile``,
``~/.aws/config``); ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) points every
client at LocalStack or a moto server instead of AWS.

Example::

    async with AwsClients(AwsSettings(region="eu-west-1")) as aws:
        s3 = await aws.client("s3")
        await s3.list_buckets()
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Self

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from .errors import AwsError, aws_errors

__all__ = ["AwsClients", "AwsSettings"]


@dataclass(frozen=True)
class AwsSettings:
    """Region, profile and endpoint of every AWS call; ``None`` means "from the usual chain"."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    def resolved_endpoint(self) -> str | None:
        """``endpoint_url``, else ``AWS_ENDPOINT_URL`` from the environment, else ``None`` (real AWS)."""
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None

    def session(self) -> AioSession:
        """The aiobotocore session of this profile (one per profile and process)."""
        # A session caches the service models it loaded (~0.5 s of JSON per service), and
        # holds no event loop or connection, so one per profile serves every client.
        session = _SESSIONS.get(self.profile)
        if session is None:
            session = get_session()
            if self.profile:
                session.set_config_variable("profile", self.profile)
            _SESSIONS[self.profile] = session
        return session


_SESSIONS: dict[str | None, AioSession] = {}


class AwsClients:
    """aiobotocore clients made on first use, closed together when the context ends."""

    def __init__(self, settings: AwsSettings | None = None, *, max_attempts: int | None = None) -> None:
        self.settings = settings or AwsSettings()
        self._session = self.settings.session()
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        # Adaptive retries absorb throttling of the control-plane calls that deploy makes in bursts.
        # Against a custom endpoint no host prefix may be added: StartSyncExecution would otherwise
        # go to http://sync-127.0.0.1:4566, which does not resolve.
        if max_attempts is None:
            max_attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or 5)
        self._max_attempts = max_attempts
        self._config = AioConfig(
            retries={"max_attempts": max_attempts, "mode": "adaptive"},
            inject_host_prefix=self.settings.resolved_endpoint() is None,
        )

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._clients.clear()
        await self._stack.__aexit__(*exc)

    @property
    def region(self) -> str:
        """The region the clients use (``--region``, ``AWS_REGION``, the profile's)."""
        with aws_errors("reading the AWS configuration"):
            # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION is what Lambda and most tools set.
            region = (self.settings.region or self._session.get_config_variable("region")
                      or os.environ.get("AWS_REGION"))
        if not region:
            raise AwsError("no AWS region configured: pass --region or set AWS_REGION", code="NoRegion")
        return region

    async def client(self, service: str, *, read_timeout: float | None = None, max_attempts: int | None = None) -> Any:
        """The (one) client of ``service`` (``"s3"``, ``"dynamodb"``, ``"stepfunctions"`` ...).

        ``read_timeout``/``max_attempts`` make a client of its own for a call that is long and must
        not be repeated: StartSyncExecution answers only when the execution ends (up to 5 minutes),
        and a retry after a read timeout would start the execution a second time.
        """
        key = service if read_timeout is None and max_attempts is None else f"{service}:{read_timeout}:{max_attempts}"
        found = self._clients.get(key)
        if found is None:
            config = self._config
            if read_timeout is not None or max_attempts is not None:
                config = config.merge(AioConfig(
                    read_timeout=read_timeout if read_timeout is not None else 60,
                    retries={"max_attempts": max_attempts if max_attempts is not None else self._max_attempts,
                             "mode": "adaptive"},
                ))
            with aws_errors(f"creating the {service} client"):
                found = await self._stack.enter_async_context(
                    self._session.create_client(
                        service,
                        region_name=self.region,
                        endpoint_url=self.settings.resolved_endpoint(),
                        config=config,
                    )
                )
            self._clients[key] = found
        return found

    async def account(self) -> str:
        """The account id of the credentials in use (STS GetCallerIdentity)."""
        sts = await self.client("sts")
        with aws_errors("STS GetCallerIdentity"):
            return (await sts.get_caller_identity())["Account"]
