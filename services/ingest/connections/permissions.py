"""Platform access stays read-only: which granted scopes would let Lodestar write.

A connection is refused when any scope its credential was granted allows writing to
the marketplace (listings, prices, orders, campaigns, messages), however the
platform spells it: Shopify ``write_orders``, Mercado Libre ``write``, Walmart
``Full Access``, Amazon Ads ``campaign_management``, TikTok ``...write``, or an SP-API
role whose operations change the seller's account.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, get_args

Platform = Literal["amazon", "amazon_ads", "mercadolibre", "shopify", "walmart", "tiktok"]
PLATFORMS: tuple[str, ...] = get_args(Platform)
_WRITE_WORDS = re.compile(
    r"(?:^|[^a-z])(write|full[\s_-]*access|manage|management|update|delete|create|edit|"
    r"modify|submit|post)(?:[^a-z]|$)",
    re.IGNORECASE,
)
# SP-API roles that include operations changing the account (listings, prices,
# shipments, buyer messages, invoices, purchases, payments); the reporting and
# tracking roles (and Account Information Service Provider) only read.
_AMAZON_WRITE_ROLES = frozenset(
    re.sub(r"[^a-z0-9]", "", role)
    for role in {
        "product listing",
        "pricing",
        "amazon fulfillment",
        "buyer communication",
        "buyer solicitation",
        "direct-to-consumer shipping",
        "tax invoicing",
        "amazon warehousing and distribution",
        "amazon logistics",
        # Acting on the account's money and purchases, not its listings.
        "amazon business order placement",
        "payment initiation service provider",
    }
)
# Write words run together with what they act on, in one lower-case word:
# "campaignmanagement", "productswrite".
_RUN_TOGETHER = re.compile(r"^(write|manage)|(write|manage|management|fullaccess)$")


def write_access(platform: str, scope: str) -> str | None:
    """Why ``scope`` would let Lodestar write to ``platform``, or None when it only reads."""
    # However it is spaced, cased or joined, a scope grants what it says: "Full  Access",
    # "Product\tListing", "ProductListing", "product-listing", "CampaignManagement".
    # Compatibility forms too: write_orders with a full-width w (U+FF57) is write_orders.
    plain = unicodedata.normalize("NFKC", scope)
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", plain).lower()
    compact = re.sub(r"[^a-z0-9]", "", words)
    # Within the string: roles joined in one ("Orders,Pricing", "Role: Pricing") grant
    # each. No read-only role's name holds a writing one's.
    if platform == "amazon" and any(role in compact for role in _AMAZON_WRITE_ROLES):
        return f"the SP-API role {scope} can change the seller's account"
    if _WRITE_WORDS.search(words) or _RUN_TOGETHER.search(compact):
        return f"{scope} grants write access; Lodestar connects read-only"
    return None
