"""The console's sign-in session: Flask's signed cookie session (itsdangerous), for the console only.

Other paths get Flask's null session, so webhooks and the APIs neither read nor set a cookie. The cookie
is signed with a key derived for this purpose alone, lives `console.session_hours` (the signature's
timestamp is checked on every request, so an expired or altered cookie is simply no session), and is
HttpOnly, SameSite=Lax, Secure when the service's public URL is https, and sent to /console only. Each
answer signs it anew, so its timestamp says when it was last used: the sign-in's own end is the session's
`signed_in_at` (access.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask, Request, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "console_session"
PREFIX = "/console"


class ConsoleSessionInterface(SecureCookieSessionInterface):
    def __init__(self, key: bytes, lifetime: timedelta, *, secure: bool):
        self._key = key
        self._lifetime = lifetime
        self._secure = secure

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self._key,
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method},
        )

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not in_console(request):
            return None  # Flask uses its null session: nothing read, nothing set
        value = request.cookies.get(COOKIE_NAME)
        if not value:
            return self.session_class()
        try:
            data = self.get_signing_serializer(app).loads(value, max_age=int(self._lifetime.total_seconds()))
        except BadSignature:  # altered, or older than the lifetime (SignatureExpired is a BadSignature)
            return self.session_class()
        return self.session_class(data if isinstance(data, dict) else {})

    def get_cookie_name(self, app: Flask) -> str:
        return COOKIE_NAME

    def get_cookie_path(self, app: Flask) -> str:
        return request.script_root + PREFIX

    def get_cookie_secure(self, app: Flask) -> bool:
        return self._secure

    def get_cookie_samesite(self, app: Flask) -> str:
        return "Lax"

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime:
        return datetime.now(UTC) + self._lifetime


def in_console(request: Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")
