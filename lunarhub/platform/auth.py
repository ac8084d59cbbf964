"""The embedded default login: per-user passwords checked against scrypt hashes in
the secrets dir. Institutional login (OAuth, LDAP) is selected in the deployment
file instead; see hub.py."""

from __future__ import annotations

from jupyterhub.auth import Authenticator
from traitlets import Unicode

from lunarhub import config
from lunarhub.config import roster, secrets


class LunarPasswordAuthenticator(Authenticator):
    deployment_file = Unicode(help="Path of the deployment YAML").tag(config=True)

    def _deployment(self) -> config.Deployment:
        return roster.effective(config.load(self.deployment_file or None))

    async def authenticate(self, handler, data):  # type: ignore[override]
        username = (data or {}).get("username", "").strip()
        password = (data or {}).get("password", "")
        d = self._deployment()
        if username not in d.users:
            self.log.warning("login refused: unknown user %r", username)
            return None
        stored = secrets.password_hashes(d).get(username)
        if not stored or not secrets.verify_password(password, stored):
            self.log.warning("login refused: wrong password for %r", username)
            return None
        secrets.first_login(d, username)  # the operator's plain-text copy is no longer needed
        return {"name": username, "groups": d.users[username].groups}
