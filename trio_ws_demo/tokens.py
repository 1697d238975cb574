"""Who may read and write which room: the shared ``--token`` and signed tokens (JWT).

A :class:`Grant` is what a client may do, decided once at the handshake (or per
HTTP request) from the credential it presents, ``Authorization: Bearer`` or
``?token=``. Pure: no I/O, the clock is passed in.

Signed tokens go through PyJWT: HS256 with ``--jwt-key``, RS256/ES256 with
``--jwt-public-key`` (a PEM file), or both: each family is then verified with
its own key (an HS256 token with the secret, an RS256 or ES256 one with the
public key), so a public key can never serve as an HMAC secret. An empty secret
is refused (:func:`check_secrets`): it would otherwise mean "no credential
required". The claims:

- ``exp`` (required): the connection is closed with 1008 ``token expired`` at it;
- ``sub``: the client's name, shown in presence;
- ``rooms``: a map from a room pattern to rights, ``"r"``, ``"w"`` or ``"rw"``;
  the rights of every pattern that matches add up;
- ``publish: true``: may publish through ``POST /<room>`` (HTTP), in the rooms
  it may write.

Room patterns: segments separated by ``/``. ``*`` as a whole segment matches
exactly one segment; ``**`` as the last segment matches one or more segments;
``**`` alone matches every room, the default room ``""`` too. Anything else
matches itself only. So ``ops/*`` matches ``ops/x`` but not ``ops``,
``ops/x/y`` or ``opsx``; ``ops/**`` matches ``ops/x`` and ``ops/x/y``.
"""

from __future__ import annotations

import hmac
import warnings
from dataclasses import dataclass, field
from typing import Any

from .errors import TokenError

__all__ = [
    "ANONYMOUS",
    "EVERY_RIGHT",
    "MAX_EXP",
    "Grant",
    "TokenVerifier",
    "check_secrets",
    "matches",
    "mint",
]

RIGHTS = frozenset({"r", "w", "rw", "wr"})
#: The largest ``exp`` accepted: the end of year 9999 (UNIX time). Past it is no
#: date an issuer means, and a float still holds it exactly.
MAX_EXP = 253_402_300_799
SECRET_ALGORITHMS = ["HS256"]
"""Verified with ``--jwt-key``."""
PUBLIC_KEY_ALGORITHMS = ["RS256", "ES256"]
"""Verified with ``--jwt-public-key``."""


def check_secrets(token: str | None, jwt_secret: str | None, jwt_public_key: bytes | None) -> None:
    """Raise ValueError for a credential that is set but empty (or only blanks).

    ``None`` means "not configured"; an empty string is a mistake (an unset
    variable in a unit file gives one) that would otherwise open the server.
    """
    for name, value in (("token", token), ("jwt_secret", jwt_secret)):
        if value is not None and not value.strip():
            raise ValueError(
                f"{name} is empty: an empty secret would let anyone in; "
                "pass a non-empty one, or None for no authentication"
            )
    if jwt_public_key is not None and not jwt_public_key.strip():
        raise ValueError(
            "jwt_public_key is empty: pass a PEM public key, or None for no signed tokens"
        )


def matches(pattern: str, room: str) -> bool:
    """Whether room name *room* is one *pattern* covers (see the module's docstring)."""
    if pattern == "**":
        return True
    wanted, names = pattern.split("/"), room.split("/")
    if wanted[-1] == "**":
        head = wanted[:-1]
        return len(names) > len(head) and all(
            (w == "*" and n != "") or w == n for w, n in zip(head, names, strict=False)
        )
    return len(wanted) == len(names) and all(
        (w == "*" and n != "") or w == n for w, n in zip(wanted, names, strict=True)
    )


#: The name of a client that gave none (no ``?name=``, no signed token).
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Grant:
    """What one client may do."""

    name: str = ANONYMOUS
    """Who it is: a signed token's ``sub``, else ``?name=``, else :data:`ANONYMOUS`."""
    rooms: tuple[tuple[str, str], ...] = ()
    """(pattern, rights) pairs from the token."""
    publish: bool = False
    """May publish over HTTP (``POST /<room>``)."""
    expires: float | None = None
    """When the token expires (UNIX time); None: never."""
    everything: bool = False
    """Every right (no credential required, or the shared ``--token``)."""

    @property
    def publisher(self) -> str:
        """Who an HTTP publish is from (the envelope's ``from``): the signed
        token's ``sub``, else ``"api"``."""
        return self.name if not self.everything else "api"

    def _rights(self, room: str) -> str:
        return "".join(rights for pattern, rights in self.rooms if matches(pattern, room))

    def can_read(self, room: str) -> bool:
        return self.everything or "r" in self._rights(room)

    def can_write(self, room: str) -> bool:
        return self.everything or "w" in self._rights(room)

    @property
    def can_read_everything(self) -> bool:
        return self.everything or any(p == "**" and "r" in r for p, r in self.rooms)

    def can_publish_http(self, room: str) -> bool:
        return self.everything or (self.publish and self.can_write(room))


#: No credential required: every right, anonymously.
EVERY_RIGHT = Grant(everything=True)


@dataclass(frozen=True)
class TokenVerifier:
    """Turns a presented credential into a :class:`Grant`, or a :class:`TokenError`."""

    shared: str | None = None
    """The shared ``--token``: every right."""
    secret: str | None = None
    """``--jwt-key``: HS256."""
    public_key: bytes | None = field(default=None, repr=False)
    """``--jwt-public-key``: RS256 or ES256 (PEM)."""

    def __post_init__(self) -> None:
        check_secrets(self.shared, self.secret, self.public_key)

    @property
    def required(self) -> bool:
        return self.shared is not None or self.secret is not None or self.public_key is not None

    @property
    def algorithms(self) -> list[str]:
        """Every algorithm a signed token may use here (each with its own key)."""
        return (SECRET_ALGORITHMS if self.secret is not None else []) + (
            PUBLIC_KEY_ALGORITHMS if self.public_key is not None else []
        )

    @property
    def mode(self) -> str:
        """The authentication mode in words, for the startup line: ``open``,
        ``shared token``, ``signed tokens (HS256)``, or both kinds joined by ``+``."""
        modes = []
        if self.shared is not None:
            modes.append("shared token")
        if self.algorithms:
            modes.append(f"signed tokens ({', '.join(self.algorithms)})")
        return " + ".join(modes) or "open"

    def grant(self, presented: list[str], now: float, name: str | None = None) -> Grant:
        """The grant for the first acceptable credential in *presented*; without
        any credential required, every right under *name*."""
        if not self.required:
            return Grant(name=name or "anonymous", everything=True)
        if not presented:
            raise TokenError("missing or wrong token")
        if self.shared is not None:
            expected = self.shared.encode()
            # compare_digest on every candidate: time does not depend on the secret.
            if any(hmac.compare_digest(p.encode(), expected) for p in presented):
                return Grant(name=name or "anonymous", everything=True)
        if not self.algorithms:
            raise TokenError("missing or wrong token")
        why = "missing or wrong token"
        for candidate in presented:
            try:
                return self._decode(candidate, now)
            except TokenError as exc:
                why = str(exc)
        raise TokenError(why)

    def _decode(self, token: str, now: float) -> Grant:
        import jwt

        key, algorithms = self._key_for(token)
        try:
            with warnings.catch_warnings():  # a short key is said once, at start
                warnings.filterwarnings("ignore", message="The HMAC key is")
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=algorithms,
                    options={"require": ["exp"], "verify_exp": False},
                )
        except jwt.MissingRequiredClaimError:
            raise TokenError("token has no exp") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("token signed with a wrong algorithm") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature does not verify") from None
        except jwt.DecodeError:  # not header.payload.signature in base64url JSON
            raise TokenError("not a signed token") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"not an acceptable token ({exc})") from None
        expires = claims.get("exp")
        if not isinstance(expires, (int, float)) or isinstance(expires, bool):
            raise TokenError("token exp is not a number")
        # PyJWT's JSON reader takes NaN, Infinity and 10**400: NaN and Infinity
        # never compare as expired (a token for ever), and float(10**400) raised
        # OverflowError out of the handshake (finding T18). A finite float
        # below MAX_EXP, or a 401. (NaN compares False; the int is compared exactly.)
        if not abs(expires) <= MAX_EXP:
            raise TokenError("token exp is out of range")
        if expires <= now:
            raise TokenError("token expired")
        rooms = claims.get("rooms", {})
        if not isinstance(rooms, dict) or not all(
            isinstance(p, str) and isinstance(r, str) and r in RIGHTS for p, r in rooms.items()
        ):
            raise TokenError('token rooms claim must map patterns to "r", "w" or "rw"')
        sub = claims.get("sub")
        return Grant(
            name=sub if isinstance(sub, str) and sub else "anonymous",
            rooms=tuple(rooms.items()),
            publish=claims.get("publish") is True,
            expires=float(expires),
        )

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        """The key that verifies *token*, and the algorithms it may be used with:
        the secret for HS256 only, the public key for RS256 and ES256 only. With
        both configured, the token's (unverified) ``alg`` picks the family; PyJWT
        then checks that ``alg`` is one the chosen key may verify."""
        if self.secret is None:
            return self.public_key, PUBLIC_KEY_ALGORITHMS
        if self.public_key is None:
            return self.secret, SECRET_ALGORITHMS
        import jwt

        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            alg = None  # jwt.decode says what is wrong with it
        if isinstance(alg, str) and alg.upper().startswith("HS"):
            return self.secret, SECRET_ALGORITHMS
        return self.public_key, PUBLIC_KEY_ALGORITHMS


def mint(
    *,
    secret: str | None,
    private_key: bytes | None,
    sub: str | None,
    rooms: dict[str, str],
    publish: bool,
    expires: float,
) -> str:
    """A signed token (the ``token`` command): HS256 with *secret*, else RS256 or
    ES256 with *private_key* (PEM; the algorithm follows the key's type)."""
    import jwt

    claims: dict[str, Any] = {"exp": int(expires), "rooms": rooms}
    if sub:
        claims["sub"] = sub
    if publish:
        claims["publish"] = True
    if secret is not None:
        with warnings.catch_warnings():  # the command says it in one line
            warnings.filterwarnings("ignore", message="The HMAC key is")
            return jwt.encode(claims, secret, algorithm="HS256")
    assert private_key is not None
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_key, password=None)
    algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]
