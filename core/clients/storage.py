"""S3-compatible object storage through the minio client (Versity locally, MinIO in production).

The minio client is synchronous: async code calls it through ``asyncio.to_thread`` so a slow
S3 server never blocks the event loop.
"""

from __future__ import annotations

import urllib3
from minio import Minio

from core.settings import Settings


def new_minio(settings: Settings, *, timeout: float = 10.0) -> Minio:
    """A client with explicit timeouts and no hidden retries, so failures surface quickly."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(timeout, 3.0), read=timeout),
        retries=urllib3.Retry(total=0),
        maxsize=10,
    )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
        http_client=http,
    )
