"""What a key may do: its limits, allowed models and expiry, validated in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

QUOTA_PERIODS = ("day", "month", "total")
# Limits are stored in INTEGER columns: 32-bit on PostgreSQL.
MAX_LIMIT = 2**31 - 1
# The width of the key table's `name` column.
MAX_KEY_NAME_CHARS = 200
_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class PolicyError(ValueError):
    """A limit, model list or expiry that makes no sense; the message says which and why."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class KeyPolicy:
    """None means "no limit" for every limit; `models` None means every model of the catalog."""

    rpm: int | None = None
    ipm: int | None = None
    user_rpm: int | None = None
    user_ipm: int | None = None
    quota: int | None = None
    quota_period: str = "total"
    models: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    disabled: bool = False

    def __post_init__(self) -> None:
        for name in ("rpm", "ipm", "user_rpm", "user_ipm", "quota"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not 1 <= value <= MAX_LIMIT):
                raise PolicyError(
                    f"{name} must be an integer from 1 to {MAX_LIMIT} (or unset for no limit)",
                    name,
                )
        if self.quota_period not in QUOTA_PERIODS:
            raise PolicyError(
                f"quota period must be one of {', '.join(QUOTA_PERIODS)}", "quota_period"
            )
        if self.models is not None and not self.models:
            raise PolicyError(
                "a key's model list cannot be empty; leave it unset to allow all models", "models"
            )
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise PolicyError("expiry must carry a time zone", "expires_at")

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def changed(self, changes: dict[str, Any]) -> KeyPolicy:
        """This policy with some fields replaced (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise PolicyError(f"unknown policy field(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rpm": self.rpm,
            "ipm": self.ipm,
            "user_rpm": self.user_rpm,
            "user_ipm": self.user_ipm,
            "quota": self.quota,
            "quota_period": self.quota_period,
            "models": list(self.models) if self.models is not None else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "disabled": self.disabled,
        }


def check_key_name(name: str) -> str:
    """A key's label, refused when longer than the database keeps."""
    if len(name) > MAX_KEY_NAME_CHARS:
        raise PolicyError(
            f"a key's name may be at most {MAX_KEY_NAME_CHARS} characters, not {len(name)}", "name"
        )
    return name


def parse_models(value: str) -> tuple[str, ...] | None:
    """`a,b` -> ("a", "b"); an empty string means every model."""
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    return names or None


def parse_expiry(value: str, now: datetime | None = None) -> datetime | None:
    """ISO 8601 (`2027-01-31`, `2027-01-31T12:00:00+01:00`; UTC when no zone is given), a
    duration from now (`90m`, `12h`, `30d`, `2w`), or `never`."""
    text = value.strip()
    if text.lower() in ("never", "none", ""):
        return None
    relative = _RELATIVE.match(text)
    if relative:
        try:
            amount = int(relative.group(1))
            return (now or datetime.now(UTC)) + timedelta(**{_UNITS[relative.group(2)]: amount})
        except (OverflowError, ValueError):  # past year 9999, or more digits than int() reads
            raise PolicyError(
                f"expiry {value!r} is beyond the year 9999: use 'never' for a key that does not "
                "expire",
                "expires_at",
            ) from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PolicyError(
            f"cannot read expiry {value!r}: give an ISO date or time (2027-01-31, "
            "2027-01-31T12:00:00Z), a duration (90m, 12h, 30d, 2w) or 'never'",
            "expires_at",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
