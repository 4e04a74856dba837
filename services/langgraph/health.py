"""`HttpHealthCheck`: does a deployed URL answer HTTP 200 (retried until a deadline)."""

from __future__ import annotations

import asyncio
import time

import httpx

__all__ = ["HttpHealthCheck"]


class HttpHealthCheck:
    """GET the URL until it answers 200 or the time is up."""

    def __init__(self, *, interval_s: float = 0.5, request_timeout_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.request_timeout_s = request_timeout_s

    async def answers(self, url: str, *, timeout_s: float) -> bool:
        """True once `url` answers HTTP 200 within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=self.request_timeout_s) as client:
            while True:
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                if time.monotonic() + self.interval_s > deadline:
                    return False
                await asyncio.sleep(self.interval_s)
