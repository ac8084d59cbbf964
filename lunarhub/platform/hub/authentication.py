"""Login: the deployment's auth kind (password, OAuth, LDAP) and who is allowed or admin."""

from __future__ import annotations

from typing import Any

from lunarhub.config import Deployment, Role


def configure_authentication(c: Any, d: Deployment) -> None:
    if d.auth.kind == "password":
        c.JupyterHub.authenticator_class = "lunarhub.platform.auth.LunarPasswordAuthenticator"
        cfg = d.config_file
        c.LunarPasswordAuthenticator.deployment_file = str(cfg) if cfg else ""
    elif d.auth.kind == "oauth":
        o = d.auth.oauth
        assert o is not None
        c.JupyterHub.authenticator_class = "generic-oauth"
        c.GenericOAuthenticator.client_id = o.client_id
        c.GenericOAuthenticator.client_secret = d.path(o.client_secret_file).read_text().strip()
        c.GenericOAuthenticator.authorize_url = o.authorize_url
        c.GenericOAuthenticator.token_url = o.token_url
        c.GenericOAuthenticator.userdata_url = o.userdata_url
        c.GenericOAuthenticator.username_claim = o.username_claim
        c.GenericOAuthenticator.scope = o.scope
        c.GenericOAuthenticator.oauth_callback_url = f"{d.public_url}/hub/oauth_callback"
    else:
        ldap = d.auth.ldap
        assert ldap is not None
        c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
        c.LDAPAuthenticator.server_address = ldap.server_address
        c.LDAPAuthenticator.server_port = ldap.server_port
        c.LDAPAuthenticator.tls_strategy = "on_connect" if ldap.use_ssl else "before_bind"
        c.LDAPAuthenticator.bind_dn_template = ldap.bind_dn_template
    c.Authenticator.allowed_users = set(d.users)
    c.Authenticator.admin_users = {u for g in d.groups_with_role(Role.admin) for u in d.members(g)}
