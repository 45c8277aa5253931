"""What a tenant may ask of the platform's model, and where a tenant's own model URL may point.

The platform's model (``SWITCHBOARD_LLM_*``) is the operator's endpoint and the operator's bill:
its key goes to its URL only, a chatbot may name only the models the operator offers there
(``llm_platform_models``, plus ``llm_workspace_models`` for one workspace) and ask at most
``llm_platform_max_tokens`` per call. A chatbot with a URL of its own brings its own key, and
that URL is the tenant's choice, so it goes through the egress guard like a tool's. The same
rules refuse a chatbot when it is saved and hold when it is called, so a chatbot stored before
a rule cannot get round it: its model is refused, its max_tokens lowered to the cap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from core.ai.llm import (
    Completion,
    Message,
    ModelSettings,
    OnDelta,
    ToolSpec,
    is_platform_url,
)
from core.errors import PermissionDenied, ValidationFailed
from core.security.egress import EgressPolicy, EgressRefused, check_destination
from core.settings import Settings

Detail = dict[str, str]


class ModelRefused(ValidationFailed):
    """The chatbot's model config asks for what the platform does not give it."""

    code = "model_refused"


class ModelEndpointRefused(PermissionDenied):
    """The chatbot's own model URL points where the egress guard never calls."""

    code = "model_endpoint_refused"


class ModelPolicy:
    """The rules, read from the settings once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.egress = EgressPolicy.from_setting(settings.llm_allow_networks)
        offered = [m.strip() for m in settings.llm_platform_models.split(",") if m.strip()]
        if not offered and settings.llm_model:
            offered = [settings.llm_model]
        self._offered = frozenset(offered)

    def own_url(self, llm: Mapping[str, Any]) -> str | None:
        """The chatbot's base URL when it is not the platform's."""
        base_url = llm.get("base_url")
        if not base_url or is_platform_url(str(base_url), self._settings):
            return None
        return str(base_url)

    def on_platform_account(self, llm: Mapping[str, Any]) -> bool:
        """Whether a call runs on the operator's account: the platform's URL with its key, or
        a platform URL without a key (a local server takes whatever key a chatbot sends)."""
        if self.own_url(llm) is not None:
            return False
        return not llm.get("api_key") or self._settings.llm_api_key is None

    def models_offered(self, workspace_id: str) -> frozenset[str]:
        extra = self._settings.llm_workspace_models.get(workspace_id) or []
        return self._offered | frozenset(extra)

    def refusals(self, llm: Mapping[str, Any], workspace_id: str) -> list[Detail]:
        """Why ``llm`` may not be saved, field by field; empty when it may."""
        details = self._call_refusals(llm, workspace_id)
        cap = self._settings.llm_platform_max_tokens
        max_tokens = llm.get("max_tokens")
        if self.on_platform_account(llm) and isinstance(max_tokens, int) and max_tokens > cap:
            details.append(
                {"field": "llm.max_tokens", "message": f"at most {cap} on the platform's model"}
            )
        return details

    def _call_refusals(self, llm: Mapping[str, Any], workspace_id: str) -> list[Detail]:
        if not (llm.get("base_url") or self._settings.llm_base_url):
            return []  # no model anywhere: the offline demo answers
        if self.own_url(llm) is not None:
            if llm.get("api_key"):
                return []
            message = (
                "a chatbot with its own base_url brings its own api_key: the platform's key "
                "is sent only to the platform's model endpoint"
            )
            return [{"field": "llm.api_key", "message": message}]
        model = llm.get("model") or self._settings.llm_model
        if not self.on_platform_account(llm) or not model:
            return []
        offered = self.models_offered(workspace_id)
        if model in offered:
            return []
        named = ", ".join(sorted(offered)) or "none"
        message = f"{model!r} is not offered on the platform's model (offered: {named})"
        return [{"field": "llm.model", "message": message}]

    def check(self, llm: Mapping[str, Any], workspace_id: str) -> None:
        """Refuse a config as it is saved (422, with a detail per field)."""
        details = self.refusals(llm, workspace_id)
        if details:
            raise ModelRefused(
                "the chatbot's model may not be used: " + "; ".join(d["message"] for d in details),
                details=details,
            )

    async def check_endpoint(self, llm: Mapping[str, Any]) -> None:
        """Refuse a chatbot's own URL that the egress guard would refuse to call (403)."""
        url = self.own_url(llm)
        if url is None:
            return
        try:
            await check_destination(url, self.egress)
        except EgressRefused as refused:
            raise ModelEndpointRefused(
                f"the chatbot's base_url may not be called: {refused.message}",
                details=[{"field": "llm.base_url", "message": refused.message}],
            ) from refused

    def resolve(self, llm: Mapping[str, Any], workspace_id: str) -> ModelSettings | None:
        """The model to call for a turn, as the rules allow it; ModelRefused when they do not.

        ``llm`` carries the chatbot's key opened. A chatbot's own URL is called through the
        egress guard; on the platform's account max_tokens is capped (and sent when unset).
        """
        details = self._call_refusals(llm, workspace_id)
        if details:
            raise ModelRefused("; ".join(d["message"] for d in details), details=details)
        chosen = ModelSettings.resolve(llm, self._settings)
        if chosen is None:
            return None
        if self.own_url(llm) is not None:
            return dataclasses.replace(chosen, egress=self.egress)
        if self.on_platform_account(llm):
            cap = self._settings.llm_platform_max_tokens
            return dataclasses.replace(chosen, max_tokens=min(chosen.max_tokens or cap, cap))
        return chosen


class RefusedModel:
    """Stands in for a model the rules refuse: the turn fails with the fallback reply, and its
    failure says why; nothing is called."""

    def __init__(self, label: str, refused: ModelRefused) -> None:
        self._label = label
        self._refused = refused

    @property
    def label(self) -> str:
        return self._label

    @property
    def parameters(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: OnDelta | None = None,
    ) -> Completion:
        raise self._refused
