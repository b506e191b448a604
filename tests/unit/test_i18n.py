import re
from pathlib import Path

from confsvc.http.i18n import WEB_DIR, Translator, load_catalogues

UNITS = {"ms", "kbps", "Mbps", "fps", "px", "s", "CSV", "XLSX", "ICS", "RTT"}  # units and format names
KEY_CALL = re.compile(r"""_\(\s*["']([a-z0-9_.]+)["']""")


def test_every_language_has_the_same_keys():
    cats = load_catalogues()
    assert cats["vi"], "the Vietnamese catalogue is empty"
    missing_en = sorted(set(cats["vi"]) - set(cats["en"]))
    missing_vi = sorted(set(cats["en"]) - set(cats["vi"]))
    assert not missing_en and not missing_vi, (missing_en, missing_vi)


def test_every_literal_key_used_in_templates_exists():
    cats = load_catalogues()
    used: set[str] = set()
    for f in Path(WEB_DIR / "templates").rglob("*.html"):
        used |= set(KEY_CALL.findall(f.read_text(encoding="utf-8")))
    missing = sorted(k for k in used if not k.endswith(".") and k not in cats["vi"])
    assert not missing, missing


def test_no_visible_text_hard_coded_in_templates():
    """Text between tags must come from the catalogue (names, codes and punctuation aside)."""
    offenders = []
    for f in Path(WEB_DIR / "templates").rglob("*.html"):
        html = f.read_text(encoding="utf-8")
        html = re.sub(r"{%\s*block \w*class\s*%}.*?{%\s*endblock\s*%}", " ", html, flags=re.S)  # CSS classes
        html = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", " ", html, flags=re.S)
        html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
        for text in re.findall(r">([^<]+)<", html):
            words = [w for w in re.findall(r"[^\W\d_]{2,}", text) if w not in UNITS]
            if words and text.strip() not in ("Tiếng Việt", "English"):
                offenders.append(f"{f.name}: {text.strip()!r}")
    assert not offenders, offenders


def test_translator_falls_back_to_vietnamese_then_the_key():
    t = Translator({"vi": {"a": "Xin chào {name}", "b": "chỉ tiếng Việt"}, "en": {"a": "Hello {name}"}}, "en")
    assert t("a", name="Mai") == "Hello Mai"
    assert t("b") == "chỉ tiếng Việt"
    assert t("zzz") == "zzz"
