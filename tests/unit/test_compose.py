"""docker-compose.yml: valid Compose, and in step with the settings and the local gateway.

The Compose Specification's JSON schema comes from the check-jsonschema distribution (a dev
dependency that vendors it), so this runs offline. The local gateway's routes are rendered by
infra/services.py exactly as ``switchboard up`` renders them, then compared route by route.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema.validators import validator_for

from core.security.default_secrets import DefaultSecret, off_local_stack, refuse_defaults
from core.settings import PROJECT_ROOT, SERVICES, Settings
from infra.services import Traefik

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
COMPOSE_DIR = PROJECT_ROOT / "infra" / "compose"

SCHEMA_DISTRIBUTION = "check-jsonschema"
SCHEMA_FILE = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"

#: The infrastructure services and the official image each must run.
INFRASTRUCTURE = {
    "kafka": "apache/kafka",
    "mongo": "mongo",
    "redis": "redis",
    "minio": "minio/minio",
    "traefik": "traefik",
    "nginx": "nginx",
}
#: Where each stateful image keeps its data; a named volume must be mounted there.
DATA_DIRS = {
    "kafka": "/var/lib/kafka/data",
    "mongo": "/data/db",
    "redis": "/data",
    "minio": "/data",
}
BUCKET_INIT = "minio-init"
SWITCHBOARD = (*SERVICES, "worker")
SECRETS = ("SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_ENCRYPTION_KEY", "SWITCHBOARD_S3_SECRET_KEY")

Compose = dict[str, Any]
#: service -> {(matcher, path, middleware definitions, priority)}
RouteTable = dict[str, set[tuple[str, str, str, int | None]]]

_MATCHER = re.compile(r"(PathPrefix|Path)\(`([^`]*)`\)")
_REQUIRED = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
_DEFAULTED = re.compile(r"^\$\{[A-Z0-9_]+:-(?P<default>[^}]*)\}$")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> Compose:
    document: Compose = _load_yaml(COMPOSE_FILE)
    return document


@pytest.fixture(scope="module")
def services(compose: Compose) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    """The schema file check-jsonschema ships, read through the distribution's file list.

    Not importlib.resources: that would import check_jsonschema (and its CLI, which needs a
    newer click than faust-streaming allows) just to find a data file.
    """
    for file in metadata.files(SCHEMA_DISTRIBUTION) or ():
        if file.as_posix() == SCHEMA_FILE:
            schema: dict[str, Any] = json.loads(file.read_text())
            return schema
    version = metadata.version(SCHEMA_DISTRIBUTION)
    pytest.fail(f"{SCHEMA_DISTRIBUTION} {version} no longer ships {SCHEMA_FILE}")


@pytest.fixture(scope="module")
def local_dynamic(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """infra/traefik/dynamic.yml.tmpl as the local gateway gets it, rendered into a temp dir."""
    state_dir = tmp_path_factory.mktemp("state")
    Traefik(settings.model_copy(update={"state_dir": state_dir})).prepare(lambda _: None)
    return _load_yaml(state_dir / "conf" / "traefik" / "dynamic.yml")


@pytest.fixture(scope="module")
def compose_dynamic() -> Any:
    return _load_yaml(COMPOSE_DIR / "dynamic.yml")


@pytest.fixture(scope="module")
def compose_static() -> Any:
    return _load_yaml(COMPOSE_DIR / "traefik.yml")


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {key: value if sep else None for key, sep, value in pairs}
    return dict(environment)


def _mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of every volume of a service, short or long syntax."""
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            yield source, rest.partition(":")[0]
        else:
            yield volume.get("source", ""), volume["target"]


def _published_targets(service: dict[str, Any]) -> set[int]:
    targets = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            targets.add(int(port["target"]))
        else:
            targets.add(int(str(port).rsplit(":", 1)[-1].partition("/")[0]))
    return targets


def _routes(dynamic: Any) -> RouteTable:
    """Each service's Path/PathPrefix matchers, with the middlewares and priority they carry."""
    http = dynamic["http"]
    middlewares = http.get("middlewares", {})
    table: RouteTable = defaultdict(set)
    for name, router in http["routers"].items():
        rule = router["rule"]
        matchers = _MATCHER.findall(rule)
        leftover = _MATCHER.sub("", rule).replace("||", "").strip()
        assert matchers, f"router {name}: no Path or PathPrefix in {rule!r}"
        assert not leftover, f"router {name}: {rule!r} is more than Path/PathPrefix joined by ||"
        missing = [m for m in router.get("middlewares", []) if m not in middlewares]
        assert not missing, f"router {name}: undefined middlewares {missing}"
        chain = json.dumps([middlewares[m] for m in router.get("middlewares", [])], sort_keys=True)
        for kind, path in matchers:
            table[router["service"]].add((kind, path, chain, router.get("priority")))
    return dict(table)


def _nginx_ports() -> set[int]:
    text = (COMPOSE_DIR / "nginx.conf").read_text()
    return {int(port) for port in re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)\b", text, re.M)}


def test_compose_file_is_valid_against_the_compose_specification(
    compose: Compose, compose_schema: dict[str, Any]
) -> None:
    assert compose_schema.get("title") == "Compose Specification"
    validator_class = validator_for(compose_schema)
    validator_class.check_schema(compose_schema)
    errors = sorted(
        validator_class(compose_schema).iter_errors(compose),
        key=lambda error: [str(part) for part in error.absolute_path],
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}" for error in errors
    )


def test_every_infrastructure_service_runs_its_official_image(services: dict[str, Any]) -> None:
    for name, repository in INFRASTRUCTURE.items():
        assert name in services, f"no {name} service"
        image, _, tag = services[name]["image"].partition(":")
        assert image == repository, f"{name} runs {image}, not the official {repository}"
        assert tag, f"{name}: pin the image's tag"
        assert tag != "latest", f"{name}: pin a tag, not latest"
    assert services["traefik"]["image"].startswith("traefik:v3")


def test_kafka_is_one_kraft_node_of_the_version_that_runs_locally(
    services: dict[str, Any], settings: Settings
) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{settings.kafka_version}"
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(
        (item.split("://")[0], int(item.rsplit(":", 1)[1]))
        for item in env["KAFKA_LISTENERS"].split(",")
    )
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
        f"{env['KAFKA_NODE_ID']}@kafka:{listeners[env['KAFKA_CONTROLLER_LISTENER_NAMES']]}"
    )
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://kafka:{listeners['PLAINTEXT']}"
    assert env["CLUSTER_ID"], "KRaft needs a cluster id"


def test_infrastructure_is_health_checked(services: dict[str, Any]) -> None:
    for name in INFRASTRUCTURE:
        healthcheck = services[name].get("healthcheck", {})
        assert healthcheck.get("test"), f"{name}: no healthcheck"
        assert not healthcheck.get("disable"), f"{name}: healthcheck disabled"


def test_every_switchboard_process_is_a_service_running_its_command(
    services: dict[str, Any],
) -> None:
    images = set()
    for name in SWITCHBOARD:
        assert name in services, f"no {name} service"
        service = services[name]
        expected = ["switchboard", "worker"] if name == "worker" else ["switchboard", "web", name]
        assert service.get("command") == expected, f"{name} runs {service.get('command')}"
        build = service["build"]
        context = build["context"] if isinstance(build, dict) else build
        assert (COMPOSE_FILE.parent / context / "Dockerfile").is_file()
        images.add(service["image"])
    assert len(images) == 1, f"the Switchboard services should share one image, not {images}"


def test_switchboard_talks_to_the_compose_services(services: dict[str, Any]) -> None:
    minio = _environment(services["minio"])
    bucket_init = _environment(services[BUCKET_INIT])
    for name in SWITCHBOARD:
        env = _environment(services[name])
        assert env["SWITCHBOARD_WEB_HOST"] == "0.0.0.0", name
        addresses = {
            "kafka": urlsplit(env["SWITCHBOARD_KAFKA_URL"]),
            "mongo": urlsplit(env["SWITCHBOARD_MONGO_URL"]),
            "redis": urlsplit(env["SWITCHBOARD_REDIS_URL"]),
            "minio": urlsplit(f"//{env['SWITCHBOARD_S3_ENDPOINT']}"),
        }
        for target, address in addresses.items():
            assert address.hostname == target, f"{name}: {target} is at {address.netloc}"
        assert addresses["kafka"].port == 9092
        assert addresses["minio"].port == 9000
        assert env["SWITCHBOARD_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"], name
        assert env["SWITCHBOARD_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
        assert env["SWITCHBOARD_S3_BUCKET"] == bucket_init["BUCKET"], name


def test_the_bucket_defaults_to_the_settings_bucket(
    services: dict[str, Any], settings: Settings
) -> None:
    bucket = _DEFAULTED.match(_environment(services[BUCKET_INIT])["BUCKET"])
    assert bucket, "the bucket is ${SWITCHBOARD_S3_BUCKET:-default}"
    assert bucket["default"] == settings.s3_bucket
    command = " ".join(services[BUCKET_INIT].get("command", []))
    assert "mc mb" in command
    assert "$$BUCKET" in command


def test_secrets_have_no_default(services: dict[str, Any]) -> None:
    required: dict[str, tuple[str, ...]] = {name: SECRETS for name in SWITCHBOARD}
    required |= {"minio": ("MINIO_ROOT_PASSWORD",), BUCKET_INIT: ("MINIO_ROOT_PASSWORD",)}
    for name, variables in required.items():
        env = _environment(services[name])
        for variable in variables:
            assert _REQUIRED.match(str(env.get(variable))), (
                f"{name}: {variable} must be ${{VAR:?message}}, not {env.get(variable)!r}"
            )


def test_the_deployment_is_not_the_local_stack(services: dict[str, Any], tmp_path: Path) -> None:
    """So a Switchboard process there refuses to start with a published default secret."""
    for name in SWITCHBOARD:
        fixed = {
            variable.removeprefix("SWITCHBOARD_").lower(): value
            for variable, value in _environment(services[name]).items()
            if variable.startswith("SWITCHBOARD_") and value and not str(value).startswith("${")
        }
        deployed = Settings(**fixed, state_dir=tmp_path)
        assert off_local_stack(deployed), name
        with pytest.raises(DefaultSecret):
            refuse_defaults(deployed)


def test_each_web_service_listens_on_its_settings_port(
    services: dict[str, Any], settings: Settings
) -> None:
    for name in SERVICES:
        port = settings.service_port(name)
        assert [int(p) for p in services[name].get("expose", [])] == [port], name
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in probe, f"{name}: healthcheck probes {probe!r}"


def test_only_the_gateway_is_published(
    services: dict[str, Any], compose_static: Any, settings: Settings
) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"traefik"}
    assert _published_targets(services["traefik"]) == {settings.gateway_port}
    assert compose_static["entryPoints"]["web"]["address"] == f":{settings.gateway_port}"


def test_services_wait_for_healthy_dependencies(services: dict[str, Any]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, condition in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), f"{target} has no healthcheck"
    for name in SWITCHBOARD:
        depends_on = services[name]["depends_on"]
        for target in ("kafka", "mongo", "redis", "minio"):
            assert depends_on[target]["condition"] == "service_healthy", (name, target)
        assert depends_on[BUCKET_INIT]["condition"] == "service_completed_successfully", name


def test_data_lives_in_named_volumes(compose: Compose, services: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    used = set()
    for name, data_dir in DATA_DIRS.items():
        mounts = dict((target, source) for source, target in _mounts(services[name]))
        assert mounts.get(data_dir) in named, f"{name}: no named volume at {data_dir}"
        used.add(mounts[data_dir])
    assert _environment(services["kafka"])["KAFKA_LOG_DIRS"] == DATA_DIRS["kafka"]
    assert DATA_DIRS["minio"] in services["minio"]["command"]
    assert used == named, f"unused volumes: {named - used}"


def test_bind_mounts_come_from_the_repository(
    services: dict[str, Any], compose_static: Any
) -> None:
    for name, service in services.items():
        for source, _ in _mounts(service):
            if source.startswith("."):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} is missing"
    traefik = {source: target for source, target in _mounts(services["traefik"])}
    assert traefik["./infra/compose/traefik.yml"] == "/etc/traefik/traefik.yml"
    assert compose_static["providers"]["file"]["filename"] == traefik["./infra/compose/dynamic.yml"]
    nginx = {source: target for source, target in _mounts(services["nginx"])}
    assert nginx["./infra/compose/nginx.conf"] == "/etc/nginx/nginx.conf"
    assert nginx["./infra/nginx/site"] == "/usr/share/nginx/html"


def test_gateway_routes_match_the_local_gateway(local_dynamic: Any, compose_dynamic: Any) -> None:
    local, deployed = _routes(local_dynamic), _routes(compose_dynamic)
    for name in SERVICES:
        paths = {(kind, path) for kind, path, _, _ in deployed.get(name, ())}
        assert ("Path", f"/_health/{name}") in paths, f"no /_health/{name} route"
    assert deployed == local


def test_gateway_services_point_at_compose_services(
    services: dict[str, Any], local_dynamic: Any, compose_dynamic: Any, settings: Settings
) -> None:
    listening = {name: {int(p) for p in services[name].get("expose", [])} for name in SERVICES}
    listening["nginx"] = _nginx_ports()
    expected = {name: (name, settings.service_port(name)) for name in SERVICES}
    expected["dashboard"] = ("nginx", settings.nginx_port)

    local = local_dynamic["http"]["services"]
    deployed = compose_dynamic["http"]["services"]
    assert set(deployed) == set(local) == set(expected)
    for name, service in deployed.items():
        balancer = dict(service["loadBalancer"])
        urls = [urlsplit(server["url"]) for server in balancer.pop("servers")]
        assert [(url.hostname, url.port) for url in urls] == [expected[name]], name
        for url in urls:
            assert url.hostname in services, f"{name}: no compose service {url.hostname}"
            assert url.port in listening[url.hostname], f"{name}: {url.hostname} not on {url.port}"
        local_balancer = {k: v for k, v in local[name]["loadBalancer"].items() if k != "servers"}
        assert balancer == local_balancer, f"{name}: load balancer options differ from local"


def test_only_the_gateway_is_a_trusted_proxy(compose: Compose, services: dict[str, Any]) -> None:
    """Throttles count clients by the address Traefik forwards: Switchboard must believe it,
    and no other container, and Traefik's fixed address must never be handed to another."""
    gateway = ipaddress.ip_address(services["traefik"]["networks"]["default"]["ipv4_address"])
    pool = compose["networks"]["default"]["ipam"]["config"][0]
    assert gateway in ipaddress.ip_network(pool["subnet"])
    assert gateway not in ipaddress.ip_network(pool["ip_range"])
    for name in SWITCHBOARD:
        trusted = _environment(services[name])["SWITCHBOARD_TRUSTED_PROXIES"]
        assert [ipaddress.ip_address(part) for part in trusted.split(",")] == [gateway], name
