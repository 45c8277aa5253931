"""The S3 server (the Versity gateway locally) through the minio client, and presigned URLs."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import timedelta

import aiohttp

from core.clients.storage import new_minio
from core.settings import Settings


async def test_put_get_and_presigned_get(settings: Settings) -> None:
    client = new_minio(settings)
    key = f"tests/{uuid.uuid4().hex}.txt"
    body = "Grüße from Switchboard".encode()
    await asyncio.to_thread(
        client.put_object,
        settings.s3_bucket,
        key,
        io.BytesIO(body),
        len(body),
        content_type="text/plain; charset=utf-8",
    )
    try:
        response = await asyncio.to_thread(client.get_object, settings.s3_bucket, key)
        try:
            assert response.read() == body
        finally:
            response.close()
            response.release_conn()

        url = await asyncio.to_thread(
            client.presigned_get_object, settings.s3_bucket, key, expires=timedelta(minutes=5)
        )
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as presigned:
                assert presigned.status == 200
                assert await presigned.read() == body
            # The server checks the signature: a tampered URL is refused.
            async with http.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")) as forged:
                assert forged.status == 403
    finally:
        await asyncio.to_thread(client.remove_object, settings.s3_bucket, key)
