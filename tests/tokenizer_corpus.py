"""A deterministic corpus of varied strings for tokenizer equivalence tests.

`make_corpus(specials)` returns the same list on every call and platform: hand-picked edge cases
(many scripts, emoji sequences, code, numbers, whitespace runs, contractions, special-token
look-alikes) followed by seeded random compositions of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

ENGLISH = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "I'LL be there, don't worry. You'RE right; it'S fine and we'VE won.",
    "don't won't can't shouldn't y'all ma'am o'clock rock'n'roll",
    "I'm, you're, he's, she'd, we'll, they've, it's, 'tis, 'twas",
    "DON'T STOP. I'M HERE. WE'D GO. THEY'LL SEE. YOU'VE GOT IT. SHE'S OK.",
    "Mixed Case: I'Ll, DoN't, We'Re, iT'S, yOu'Ve, sHe'D, I'M",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D",
    "''quoted'' and \"double\" and `back` and «guillemets» and „low“ ‘single’",
    "e.g. i.e. etc. Mr. Mrs. Dr. St. U.S.A. a.m. p.m.",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A",
    "a",
    "I",
    ".",
    "!!!",
    "???!!!...",
    "--- *** ___ ~~~ ===",
    "email: john.doe+test@example.co.uk, url: https://example.com/path?q=1&r=a%20b#frag",
    "C:\\Users\\name\\Documents\\file.txt and /usr/local/bin/python3",
    "#hashtag @mention $100 50% 3+4=7 a^2 b|c ~tilde <angle> [square] {curly}",
    "He said: \"It's 5 o'clock!\" — she replied: 'No, it's 6.'",
    "tl;dr: LGTM, WIP, FYI, ASAP, IMHO",
]

MULTISCRIPT = [
    "Ünïcödé façade naïve coöperate résumé",
    "Größe, Straße, Fußgänger, Äpfel, Öl, Übermut",
    "Zażółć gęślą jaźń",
    "Příliš žluťoučký kůň úpěl ďábelské ódy",
    "Tiếng Việt có dấu: Xin chào, tôi tên là Nguyễn",
    "Ελληνικά: Γειά σου Κόσμε, ΑΒΓΔ αβγδ",
    "Русский текст: Привет, мир! ЁЖИК ёжик",
    "Українська: Їжак, ґанок, є",
    "Српски: Ђорђе, Љубав, Њива, Џеп",
    "עברית: שלום עולם",
    "العربية: مرحبا بالعالم، كيف حالك؟",
    "فارسی: سلام دنیا ۱۲۳۴",
    "اردو: ہیلو دنیا",
    "हिन्दी: नमस्ते दुनिया, क्षत्रिय",
    "বাংলা: হ্যালো বিশ্ব",
    "தமிழ்: வணக்கம் உலகம்",
    "తెలుగు: హలో ప్రపంచం",
    "ਪੰਜਾਬੀ: ਸਤ ਸ੍ਰੀ ਅਕਾਲ",
    "ગુજરાતી: નમસ્તે",
    "മലയാളം: നമസ്കാരം",
    "ไทย: สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง",
    "ລາວ: ສະບາຍດີ",
    "ខ្មែរ: សួស្តីពិភពលោក",
    "မြန်မာ: မင်္ဂလာပါ",
    "中文：你好，世界！这是一个测试。",
    "繁體中文：你好，世界！這是一個測試。",
    "日本語：こんにちは世界。カタカナとひらがなと漢字。",
    "ｶﾀｶﾅ ﾊﾝｶｸ and ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ１２３",
    "한국어: 안녕하세요 세계! 한글 자모 ㄱㄴㄷ",
    "ქართული: გამარჯობა მსოფლიო",
    "Հայերեն: Բարեւ աշխարհ",
    "አማርኛ: ሰላም ልዑል",
    "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ",
    "ᐃᓄᒃᑎᑐᑦ syllabics",
    "Ꭰ Ꭱ Ꭲ Cherokee",
    "ᚠᚢᚦᚨᚱᚲ runes and 𐌰𐌱𐌲 gothic",
    "Türkçe: İstanbul, ığdır, ŞĞÜÇÖ",
    "Română: Științe, țară",
    "Íslenska: Þórður, ðæ",
    "Español: ¿Dónde está el niño? ¡Olé!",
    "Français : « Où est la bibliothèque ? » L'été, c'est l'œuvre",
    "Português: ação, coração, não",
    "Kiswahili: Habari ya dunia",
    "Yorùbá: Ẹ kú àárọ̀",
    "Lingála: Mbote na mokili",
]

EMOJI = [
    "😀😃😄😁😆",
    "👍🏽 thumbs up, 👋🏿 wave, 🧑🏻‍💻 technologist",
    "👨‍👩‍👧‍👦 family",
    "👩‍❤️‍💋‍👨 kiss",
    "🏳️‍🌈 rainbow flag, 🏳️‍⚧️ transgender flag",
    "🇫🇷🇩🇪🇯🇵🇺🇸🇧🇷 flags",
    "🏴󠁧󠁢󠁥󠁮󠁧󠁿 England (tag sequence)",
    "1️⃣ 2️⃣ #️⃣ *️⃣ keycaps",
    "❤️ vs ❤ vs ♥️",
    "🧑‍🤝‍🧑🧑‍🚀👨‍🔬👩‍🌾",
    "🐻‍❄️ polar bear and 😶‍🌫️ face in clouds",
    "emoji🙂glued🙃to😉words",
    "🚀 launch at T-10s 🔥🔥🔥",
    "✅ done ❌ failed ⚠️ warning ℹ️ info",
    "☕️🍵🍺🍷🥂",
    "🫠🫨🪿 newer emoji",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo(Bar):\n\tdef __init__(self, *args, **kwargs) -> None:\n\t\tsuper().__init__(*args, **kwargs)\n",
    'import numpy as np\nx = np.arange(10).reshape(2, 5)\nprint(f"{x.sum():.3f}")\n',
    '#include <stdio.h>\n\nint main(int argc, char **argv) {\n    printf("Hello, %s!\\n", argv[0]);\n'
    "    return 0;\n}\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c; }",
    "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(1, 2)}`);\n",
    'fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!("{:?}", v);\n}\n',
    'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hi")\n}\n',
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    '<!DOCTYPE html>\n<html>\n  <body>\n    <div class="x"><p>Hi&nbsp;there</p></div>\n  </body>\n</html>\n',
    "<table><tr><td>a</td><td>b</td></tr></table>",
    '{"key": "value", "list": [1, 2.5, -3e10, true, null], "nested": {"a": {}}}',
    '#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo "$f"; done 2>&1 | tee log\n',
    "main :: IO ()\nmain = mapM_ print [x | x <- [1..10], odd x]\n",
    "\\begin{equation}\n  E = mc^2 \\quad \\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}",
    "x = {'a': 1, 'b': [1,2,3]}  # comment with 'quotes' and \"double\"",
    "if (a && b || !c) { return a != b ? a : b; } // ternary",
    "    indented    with    spaces\n\tand\ttabs\n",
    "a->b; c::d; e=>f; g<=h; i>=j; k!=l; m==n; o===p; q!==r; s**=t; u//=v",
    "@decorator\ndef f(): ...\n\n\nasync def g(): await h()",
    "matrix = [[1, 0, 0],\n          [0, 1, 0],\n          [0, 0, 1]]",
    "0x1F 0b1010 0o777 1_000_000 3.14159e-10 .5 5. -0 +1 1e+308",
    "regex = r'^(?P<name>[A-Za-z_]\\w*)\\s*=\\s*(\\d+)$'",
    "<?php echo $var['key']; ?>",
    "ls -la | grep '^d' | awk '{print $9}' > dirs.txt",
    "// TODO(user): fix this\n/* multi\n * line\n */",
    "    \n    \n\n",
    "end;\r\nbegin\r\n  x := 1;\r\nend.\r\n",
]

SPECIAL_LIKE = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<tool_call>",
    "</tool_call>",
    "<file_sep>",
    "<repo_name>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
    "<pad>",
    "<unk>",
    "<mask>",
    "<unused0>",
    "<unused12>",
    "<table>",
    "</td>",
    "[multimodal]",
    "<start_of_image>",
    "<s>",
    "</s>",
    "<0x41>",
    "<0xFF>",
    "<|im_start",
    "im_end|>",
    "<|endoftext",
    "<start_of_turn",
    "<<|im_end|>>",
    "<|im_start|><|im_start|>",
    "<end_of_turn><end_of_turn>",
    "<|eot_id|>",
]


def _numbers(rng: random.Random) -> list[str]:
    out = [str(10**k) for k in range(0, 25)]
    out += ["".join(rng.choice("0123456789") for _ in range(n)) for n in range(1, 41)]
    out += [
        "3.14159265358979323846",
        "-42",
        "+7",
        "1,234,567.89",
        "1.234.567,89",
        "1 000 000",
        "6.022e23",
        "1e-9",
        "0.000001",
        "2024-06-30T12:34:56Z",
        "12:00",
        "1/2",
        "¾ ½ ¼",
        "²³¹ superscripts ⁴⁵",
        "₀₁₂ subscripts",
        "①②③ circled",
        "Ⅻ Ⅳ roman",
        "٠١٢٣٤٥٦٧٨٩ arabic-indic",
        "०१२३ devanagari digits",
        "１２３４５ fullwidth digits",
        "v1.2.3-rc.4+build.5",
        "IPv4 192.168.0.1",
        "+1 (555) 123-4567",
        "$1,000,000.00",
        "€99,99",
        "¥10000",
        "100%",
        "#1",
        "No. 7",
        "a1b2c3d4",
        "x86_64 arm64 utf8 mp3 h264 4k 1080p 3D",
        "123abc456def",
        "007",
        "0000000",
        "9" * 33,
    ]
    return out


def _whitespace() -> list[str]:
    out = [" " * n for n in (1, 2, 3, 4, 5, 8, 16, 31, 32, 33, 40, 64)]
    out += ["\t" * n for n in (1, 2, 3, 8, 31, 32, 35)]
    out += ["\n" * n for n in (1, 2, 3, 4, 10, 31, 32, 40)]
    out += [
        "",
        "\r\n",
        "\r\n\r\n",
        "\r",
        " \n",
        "\n ",
        " \n ",
        "\t\n",
        "\n\t",
        " \t \n \r\n ",
        "a  b",
        "a   b",
        "a\tb",
        "a\t\tb",
        "a\nb",
        "a\n\nb",
        "a \n b",
        "a\r\nb",
        "a \t b",
        "  leading",
        "trailing  ",
        "  both  ",
        "\tleading tab",
        "trailing tab\t",
        "\nleading newline",
        "trailing newline\n",
        "\n\n\nmany\n\n\n",
        "   \n\n   indented after blank lines",
        "a\u00a0b (nbsp)",
        "a\u3000b (ideographic space)",
        "a\u2009b (thin space)",
        "a\u200bb (zwsp)",
        "a\u2028b\u2029c",
        "a\u0085b",
        "a\u000bb\u000cc",
        "a\u001cb\u001fc",
        "\u00a0\u00a0\u00a0",
        "\u3000\u3000",
        " \u00a0 \u3000 ",
        "end with nbsp\u00a0",
        "\u200d\u200c\u200e\u200f",
        "\ufeffBOM at start",
        "word\u00adsoft\u00adhyphen",
        "x" + " " * 40 + "y",
        "x" + "\t" * 40 + "y",
        "x" + "\n" * 40 + "y",
        " " * 7 + "\n" * 3 + "\t" * 2 + "z",
    ]
    return out


def _oddities() -> list[str]:
    return [
        "e\u0301 vs \u00e9 (combining acute)",
        "a\u0300\u0301\u0302\u0303\u0304 stacked marks",
        "Z\u0351\u0352\u0353a\u0354\u0355l\u0356\u0357g\u0358o zalgo",
        "ﬁ ﬂ ﬀ ligatures",
        "Å Å Å (angstrom forms)",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 𝒮𝒸𝓇𝒾𝓅𝓉",
        "∀x∈ℝ: x²≥0 ∑∏∫∂∇ ≤≥≠≈∞",
        "→ ← ↑ ↓ ⇒ ⇔ ↦",
        "─│┌┐└┘├┤┬┴┼ box",
        "░▒▓█ blocks ▁▂▃▄▅▆▇█",
        "▁leading lower-one-eighth block",
        "a▁b▁c",
        "♠♣♥♦ ♪♫ ☀☁☂",
        "© ® ™ § ¶ † ‡ • …",
        "\x01\x02\x03 control \x07\x08\x1b[0m",
        "tab\x7fdel",
        "\ue000\uf8ff private use",
        "𠀀𠀁 CJK ext B",
        "\U0001f9ff\U0001faf6",
        "ŉ ǅ ǈ ǋ titlecase digraphs",
        "ẞ ß ſ",
        "İi̇ dotted",
        "ⓐⓑⓒ circled letters",
        "Ｈｅｌｌｏ，　ｗｏｒｌｄ！",
        "「かぎかっこ」『二重』【隅付き】",
        "¿¡ inverted",
        "‰ ‱ ′ ″ ‴",
        "\u202eRTL override\u202c",
        "\u2066isolate\u2069",
        "ـــ tatweel",
        "ٱلْعَرَبِيَّة with harakat",
        "שָׁלוֹם with niqqud",
        "ñ n\u0303",
        "ǆemal",
        "ℌℑℜ",
        "ꙮ multiocular o",
        "𓀀𓀁 hieroglyphs",
        "\u0000 nul inside",
        "a\u0000b",
    ]


def _random_codepoints(rng: random.Random, count: int) -> list[str]:
    """Strings of random code points from all over Unicode (no surrogates), mixed with ASCII."""

    def one() -> str:
        r = rng.random()
        if r < 0.3:
            return chr(rng.randrange(0x20, 0x7F))
        if r < 0.4:
            return rng.choice(" \t\n\r'0123456789")
        if r < 0.8:
            cpt = rng.randrange(0x80, 0x30000)
        else:
            lo, hi = rng.choice([(0xE0000, 0xE0080), (0x1F000, 0x1FB00), (0x2000, 0x2070), (0x0, 0x20), (0x300, 0x370)])
            cpt = rng.randrange(lo, hi)
        return chr(0x41 if 0xD800 <= cpt < 0xE000 else cpt)

    return ["".join(one() for _ in range(rng.randint(1, 25))) for _ in range(count)]


def make_corpus(specials: Sequence[str] = (), n: int = 1200, seed: int = 20240630) -> list[str]:
    """At least `n` strings (deterministic). `specials` are a model's special-token texts to embed."""
    rng = random.Random(seed)
    specials = list(specials)
    fixed = ENGLISH + MULTISCRIPT + EMOJI + CODE + SPECIAL_LIKE + _numbers(rng) + _whitespace() + _oddities()
    fixed += [f"{s}" for s in specials]
    fixed += [f"text{s}text" for s in specials] + [f" {s} " for s in specials]
    fixed += [f"<|im_start|>user\nHello{s}world<|im_end|>\n<|im_start|>assistant\n" for s in specials[:3]]
    fixed += [f"<start_of_turn>user\n{s} hi<end_of_turn>\n<start_of_turn>model\n" for s in specials[:3]]
    fixed += [s.upper() for s in ENGLISH[:10]] + [s.lower() for s in ENGLISH[:10]]

    pool = ENGLISH + MULTISCRIPT + EMOJI + CODE + SPECIAL_LIKE + _numbers(rng) + _oddities() + specials * 4
    seps = ["", " ", "  ", "   ", "\n", "\n\n", "\t", " \n", "\r\n", "\u3000", "\u00a0", ",", ". ", "'", "1"]
    edges = ["", "", "", " ", "  ", "\n", "\t", " \n", "\n\n", "    "]
    out = list(fixed) + _random_codepoints(rng, 200)
    while len(out) < n:
        k = rng.randint(1, 5)
        parts = []
        for _ in range(k):
            frag = rng.choice(pool)
            if len(frag) > 40 and rng.random() < 0.5:  # take a slice, possibly mid-word
                a = rng.randrange(len(frag))
                frag = frag[a : a + rng.randint(1, 40)]
            r = rng.random()
            if r < 0.1:
                frag = frag.upper()
            elif r < 0.15:
                frag = frag.title()
            parts.append(frag)
            parts.append(rng.choice(seps))
        out.append(rng.choice(edges) + "".join(parts[:-1]) + rng.choice(edges))
    return out
