"""Prices and their currency as the connection gives them, and what a try cost.

The cost is ours, not the vendor's: requests and images counted by the client times the prices
set on the connection (``price_per_request``, ``price_per_image``, ``currency``). It says what a
try would cost at those prices, never what the vendor billed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ISO 4217 alphabetic codes in circulation (the standard's list one, funds and metals included).
ISO_4217 = frozenset(
    {
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BOV",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHE",
        "CHF",
        "CHW",
        "CLF",
        "CLP",
        "CNY",
        "COP",
        "COU",
        "CRC",
        "CUC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MXV",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SLL",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "USN",
        "UYI",
        "UYU",
        "UYW",
        "UZS",
        "VED",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XCD",
        "XCG",
        "XDR",
        "XOF",
        "XPD",
        "XPF",
        "XPT",
        "XSU",
        "XUA",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
        "ZWL",
    }
)


def require_currency(name: str, value: object) -> str:
    """Return ``value`` as an upper-case ISO 4217 code; raise ``ValueError`` naming ``name`` otherwise."""
    code = value.strip().upper() if isinstance(value, str) else ""
    if code not in ISO_4217:
        shown = repr(value)[:20] if isinstance(value, str) else f"a {type(value).__name__}"
        raise ValueError(f"{name} must be an ISO 4217 currency code such as 'USD' or 'EUR', got {shown}.")
    return code


def require_price(name: str, value: object) -> float:
    """Return ``value`` when it is a finite number >= 0; raise ``ValueError`` naming ``name`` otherwise."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
    if not math.isfinite(number) or number < 0:
        shown = repr(value)[:20] if isinstance(value, str | int | float) else f"a {type(value).__name__}"
        raise ValueError(f"{name} must be a finite number >= 0 (a price), got {shown}.")
    return float(number)


@dataclass(frozen=True)
class Prices:
    """What one request and one image cost, in ``currency``.

    :param per_request: the price of every request sent (retries included).
    :param per_image: the price of an image request on top of its request price.
    :param currency: the ISO 4217 code of both.
    """

    per_request: float = 0.0
    per_image: float = 0.0
    currency: str | None = None

    def cost(self, requests: int, images: int) -> float:
        """Return what ``requests`` requests of which ``images`` were image requests cost."""
        return round(requests * self.per_request + images * self.per_image, 6)
