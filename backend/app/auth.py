"""Authentication: the session token that the frontend's Better Auth issued.

The scheme, and why. Better Auth keeps sessions in its ``session`` table, in the
same PostgreSQL database as the todos, and hands the browser the session token
signed with BETTER_AUTH_SECRET: ``<token>.<base64 HMAC-SHA256(secret, token)>``.
That signed value is what its session cookie holds and what its ``bearer``
plugin documents as the bearer token. The frontend passes it to this API as
``Authorization: Bearer <signed token>``, and the backend

1. checks the signature with the shared BETTER_AUTH_SECRET, so a forged or
   guessed token is refused without touching the database, then
2. looks the token up in Better Auth's ``session`` table and accepts it only
   while the session has not expired; the row's ``userId`` is the caller.

Compared with Better Auth's JWT plugin (a JWT verified against the frontend's
JWKS), this needs no call from the backend to the frontend (whose public URL
the backend container often cannot reach) and no key cache, and a sign-out or
revoked session stops working at once instead of when a JWT expires. The cost,
one indexed lookup per request, is small next to the query the request makes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import unquote

from fastapi import HTTPException, Request, status
from sqlalchemy import column, func, select, table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, ProgrammingError

# Better Auth's default model and field names (better-auth 1.x, PostgreSQL through its Kysely adapter).
SESSION_TABLE = table(
    "session",
    column("token"),
    column("userId"),
    column("expiresAt"),
)

CHALLENGE = {"WWW-Authenticate": "Bearer"}
SIGN_IN_AGAIN = "sign in again to get a new session"


@dataclass(frozen=True)
class CurrentUser:
    id: str


def unauthorized(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=reason, headers=CHALLENGE)


def _decode_signature(text: str) -> bytes | None:
    # Better Auth writes standard base64 with padding; accept the URL-safe alphabet and a
    # missing padding too, as some clients re-encode it.
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_signed_token(signed: str, secret: str) -> str:
    """The session token inside a signed bearer token; raises a 401 when it is not genuine."""
    # The cookie form is URL-encoded (the base64 signature holds +, / and =).
    value = unquote(signed.strip()) if "%" in signed else signed.strip()
    token, dot, signature = value.rpartition(".")
    if not dot or not token or not signature:
        raise unauthorized(
            "malformed bearer token: expected the signed Better Auth session token "
            f"(<token>.<signature>); {SIGN_IN_AGAIN}"
        )
    given = _decode_signature(signature)
    expected = hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()
    if given is None or not hmac.compare_digest(given, expected):
        raise unauthorized(
            "the bearer token's signature does not match BETTER_AUTH_SECRET: it was not issued "
            "by this deployment's frontend, or the two services hold different secrets"
        )
    return token


def bearer_value(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized(
            "missing Authorization header: send 'Authorization: Bearer <session token>' "
            "with the token the frontend received when you signed in"
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthorized("the Authorization header must read 'Bearer <session token>'")
    return value


def lookup_session(engine: Engine, token: str) -> str | None:
    """The id of the user whose unexpired session holds ``token``, else None."""
    query = (
        select(SESSION_TABLE.c.userId)
        .where(SESSION_TABLE.c.token == token)
        .where(SESSION_TABLE.c.expiresAt > func.now())
    )
    with engine.connect() as connection:
        try:
            return connection.execute(query).scalar_one_or_none()
        except ProgrammingError as error:
            # No `session` table yet: nobody has signed up through the frontend, so no
            # token can be valid. Anything else is a real database problem.
            if getattr(error.orig, "sqlstate", None) == "42P01":
                return None
            raise


def authenticate(request: Request, engine: Engine, secret: str) -> CurrentUser:
    token = verify_signed_token(bearer_value(request), secret)
    try:
        user_id = lookup_session(engine, token)
    except DBAPIError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the database is unavailable, so the session cannot be checked; try again shortly",
        ) from None
    if user_id is None:
        raise unauthorized(f"the session has expired or was signed out; {SIGN_IN_AGAIN}")
    return CurrentUser(id=user_id)
