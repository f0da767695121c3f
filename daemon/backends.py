"""Which backend serves an Anthropic request: Google's pool or z.ai.

One plan, decided from config and pool state (UPSTREAM.md §10, the
``[zai]`` dispatch modes); the routes only translate and stream, and ask
this module what to do:

- ``off``: Google only.
- ``exclusive``: z.ai only.
- ``pooled``: z.ai is one more slot in the rotation, for names it has a
  ``glm-*`` model for; when it fails, Google's accounts take the request.
- ``fallback``: z.ai only when no Google account could serve (a 429 or
  worse, no account at all, or a model name Google does not serve: its 404
  or none in the catalog), for names it has a model for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from daemon.config import Config
from daemon.errors import GatewayError, ModelNotFound, NoAccountAvailable
from daemon.protocols import zai as zai_tr

Backend = Literal["google", "zai"]


class BackendPlan:
    """The owner of the pooled rotation's counter (the only state here)."""

    def __init__(self, config: Callable[[], Config], active_accounts: Callable[[], int]) -> None:
        self._config = config
        self._active = active_accounts
        self._turn = 0

    @property
    def mode(self) -> str:
        z = self._config().zai
        if not z.enabled or not z.api_key:
            return "off"
        return str(z.dispatch_mode)

    def zai_knows(self, client_model: str) -> bool:
        """Whether z.ai has a glm-* model for this name (a gemini-* name has none)."""
        try:
            zai_tr.zai_model(client_model, self._config().zai.models)
        except ModelNotFound:
            return False
        return True

    def first(self, client_model: str) -> Backend:
        """Who gets the request first."""
        mode = self.mode
        if mode == "exclusive":
            return "zai"
        if mode == "pooled" and self.zai_knows(client_model):
            slots = self._active() + 1
            turn, self._turn = self._turn, self._turn + 1
            return "zai" if turn % slots == 0 else "google"
        return "google"

    def google_after_zai(self, err: GatewayError) -> bool:
        """z.ai failed first: may Google's accounts take the request?"""
        return self.mode != "exclusive" and self._active() > 0

    def zai_after_google(self, client_model: str, *, zai_tried: bool) -> bool:
        """May z.ai take a request Google's accounts could not serve? Not
        when z.ai failed first already (Google's answer stands), and not for
        a name z.ai has no model for (the client hears why Google could not)."""
        return self.mode in ("fallback", "pooled") and not zai_tried and self.zai_knows(client_model)

    @staticmethod
    def falls_back_on(err: GatewayError) -> bool:
        """Google's failures that z.ai may answer: no account, a model Google
        does not serve (404), 429 or worse."""
        return isinstance(err, NoAccountAvailable | ModelNotFound) or err.status >= 429
