"""Typed application keys: every dependency a web service holds, opened in ``cleanup_ctx``."""

from __future__ import annotations

from aiohttp import web
from minio import Minio
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from core.channels.registry import ChannelRegistry
from core.clients.database import Document
from core.clients.producer import LazyProducer
from core.settings import Settings
from web.webhook_ingress import WebhookIngress

SETTINGS = web.AppKey("settings", Settings)
SERVICE_NAME = web.AppKey("service_name", str)
MONGO = web.AppKey("mongo", AsyncMongoClient[Document])
REDIS = web.AppKey("redis", Redis)
MINIO = web.AppKey("minio", Minio)
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
PRODUCER = web.AppKey("producer", LazyProducer)
CHANNEL_REGISTRY = web.AppKey("channel_registry", ChannelRegistry)
WEBHOOK_INGRESS = web.AppKey("webhook_ingress", WebhookIngress)
