from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.settings import SERVICES, Settings
from infra.services import Nginx, Traefik
from infra.templates import MissingTemplateValue, render


def test_render_substitutes_and_keeps_dollars() -> None:
    assert render("a {{ x }} $uri {{y}}", {"x": 1, "y": "two"}) == "a 1 $uri two"


def test_missing_value_fails_loudly() -> None:
    with pytest.raises(MissingTemplateValue):
        render("{{ missing }}", {})


def test_traefik_routes_every_service(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, web_base_port=9200)
    Traefik(settings).prepare(print)
    dynamic = yaml.safe_load((tmp_path / "conf" / "traefik" / "dynamic.yml").read_text())
    routers, services = dynamic["http"]["routers"], dynamic["http"]["services"]
    for service in SERVICES:
        assert routers[f"health-{service}"]["rule"] == f"Path(`/_health/{service}`)"
        assert routers[f"health-{service}"]["middlewares"] == ["to-healthz"]
        url = services[service]["loadBalancer"]["servers"][0]["url"]
        assert url == f"http://127.0.0.1:{settings.service_port(service)}"
    assert "sticky" in services["socket"]["loadBalancer"]
    assert routers["dashboard"]["priority"] == 1
    static = yaml.safe_load((tmp_path / "conf" / "traefik" / "traefik.yml").read_text())
    assert static["entryPoints"]["web"]["address"] == "127.0.0.1:8080"


def test_nginx_config_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(state_dir=tmp_path, nginx_port=9190)
    built = tmp_path / "widget" / "widget.js"
    monkeypatch.setattr("infra.widget.ensure_widget_built", lambda settings, progress: built)
    Nginx(settings).prepare(print)
    config = (tmp_path / "conf" / "nginx" / "nginx.conf").read_text()
    assert "listen 127.0.0.1:9190;" in config
    assert "{{" not in config
    widget = config.split("location = /widget.js {", 1)[1].split("\n        }", 1)[0]
    assert f"alias {built};" in widget
    assert "types { application/javascript js; }" in widget
    assert "charset utf-8;" in widget
    assert 'Access-Control-Allow-Origin "*"' in widget
    assert 'Cache-Control "no-cache"' in widget
    demo = config.split("location /demo/ {", 1)[1].split("\n        }", 1)[0]
    assert f"alias {tmp_path / 'data' / 'site' / 'demo'}/;" in demo
