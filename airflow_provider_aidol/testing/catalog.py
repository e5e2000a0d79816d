"""The asset options served by /v1/config/options."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACES = ("custom_agent", "custom_image")
GENDERS = ("female", "male")
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Option:
    """One selectable option; ``gender`` None means it suits both genders."""

    code: str
    en: str
    zh: str
    gender: str | None = None

    def as_json(self, language: str, preview_base: str) -> dict[str, str]:
        """Return the option as the API lists it."""
        return {
            "code": self.code,
            "label": self.zh if language == "zh" else self.en,
            "previewUrl": f"{preview_base}/{self.code}.png",
        }


CATALOG: dict[str, dict[str, tuple[Option, ...]]] = {
    "custom_image": {
        "Pose": (
            Option("pose_standing", "Standing", "站立"),
            Option("pose_sitting", "Sitting", "坐姿"),
            Option("pose_waving", "Waving", "挥手"),
        ),
        "Background": (
            Option("bg_beach", "Beach", "海滩"),
            Option("bg_city_night", "City at night", "城市夜景"),
            Option("bg_studio", "Studio", "摄影棚"),
        ),
        "Outfit": (
            Option("outfit_dress", "Summer dress", "夏日连衣裙", gender="female"),
            Option("outfit_suit", "Business suit", "西装", gender="male"),
            Option("outfit_hoodie", "Hoodie", "连帽衫"),
        ),
    },
    "custom_agent": {
        "Hairstyle": (
            Option("hair_long", "Long hair", "长发", gender="female"),
            Option("hair_short", "Short hair", "短发"),
            Option("hair_buzz", "Buzz cut", "寸头", gender="male"),
        ),
        "Personality": (
            Option("personality_cheerful", "Cheerful", "开朗"),
            Option("personality_calm", "Calm", "沉稳"),
        ),
        "Voice": (
            Option("voice_soft", "Soft", "温柔", gender="female"),
            Option("voice_deep", "Deep", "低沉", gender="male"),
        ),
    },
}


def find_option(namespace: str, code: str) -> Option | None:
    """Return the option with ``code`` in ``namespace``, or None."""
    categories = CATALOG.get(namespace, {})
    return next((o for options in categories.values() for o in options if o.code == code), None)


def list_options(
    namespace: str, *, gender: str | None, language: str, preview_base: str
) -> dict[str, list[dict[str, str]]]:
    """Return each category of ``namespace`` with the options suiting ``gender`` (all if None)."""
    return {
        category: [
            option.as_json(language, f"{preview_base}/{namespace}")
            for option in options
            if gender is None or option.gender in (None, gender)
        ]
        for category, options in CATALOG[namespace].items()
    }
