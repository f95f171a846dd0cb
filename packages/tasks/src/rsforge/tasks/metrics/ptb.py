"""PTB tokenization as pycocoevalcap applies it, in pure Python: what `PTBTokenizer().tokenize` makes of
one caption, without starting Java (SCST scores every rollout, far too often for a JVM per step).

pycocoevalcap runs Stanford CoreNLP 3.4.1's `PTBTokenizer -preserveLines -lowerCase`, then drops the
tokens in its PUNCTUATIONS list. This module ports the rules of that release's JFlex lexer
(`edu/stanford/nlp/process/PTBLexer.flex` at tag v3.4.1) with its default options (PTB3 escaping,
traditional fractions, no americanizing, untokenizable characters deleted): at each position every rule
is tried, the longest match wins (trailing context counts towards the length, as in JFlex), ties go to
the earlier rule; then come the rule's normalisations (brackets to -LRB-, quotes to `` and '', dashes to
--, ...), lowercasing (so -LRB- becomes -lrb-, which pycocoevalcap keeps) and the PUNCTUATIONS filter.

Limits, none of which a caption normally meets: Unicode classes are Python's, not JFlex 1.4's tables;
characters outside the Basic Multilingual Plane are split into UTF-16 surrogates, as Java reads them.
The Java tokenizer reads all captions as one stream, so two rules look past a caption's end into the next
one (an acronym like "B." before a line starting "The"); here a caption is followed by a line break and
the end of input, as the last caption of a batch is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

# pycocoevalcap's list (tokenizer/ptbtokenizer.py), compared after lowercasing, as it does.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-",
                          "--", "...", ";"])
# Line breaks become spaces first, as `rsforge.tasks.metrics.captions` does before the Java tokenizer reads
# one caption per line.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\u2028\u2029]")


def _ranges(predicate: Callable[[str], bool]) -> str:
    """A character-class body of the BMP characters satisfying `predicate` (JFlex reads UTF-16 units)."""
    out, start = [], None
    for code in range(0x10000 + 1):
        inside = code < 0x10000 and predicate(chr(code))
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            out.append(f"\\u{start:04x}" if start == code - 1 else f"\\u{start:04x}-\\u{code - 1:04x}")
            start = None
    return "".join(out)


L = _ranges(lambda c: unicodedata.category(c).startswith("L"))  # Java Character.isLetter
LU = _ranges(lambda c: unicodedata.category(c) == "Lu")
ND = _ranges(lambda c: unicodedata.category(c) == "Nd")  # Java Character.isDigit
EXTRA = (r"\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F\u0370-\u037D\u0384\u0385"
         r"\u03CF\u03F6\u03FC-\u03FF\u0483-\u0487\u04CF\u04F6-\u04FF\u0510-\u0525\u055A-\u055F\u0591-\u05BD\u05BF"
         r"\u05C1\u05C2\u05C4\u05C5\u05C7\u0615-\u061A\u063B-\u063F\u064B-\u065E\u0670\u06D6-\u06EF\u06FA-\u06FF"
         r"\u070F\u0711\u0730-\u074F\u0750-\u077F\u07A6-\u07B1\u07CA-\u07F5\u07FA\u0900-\u0903\u093C\u093E-\u094E"
         r"\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09BC-\u09C4\u09C7\u09C8\u09CB-\u09CD\u09D7\u09E2\u09E3"
         r"\u0A01-\u0A03\u0A3C\u0A3E-\u0A4F\u0A81-\u0A83\u0ABC-\u0ACF\u0B82\u0BBE-\u0BC2\u0BC6-\u0BC8\u0BCA-\u0BCD"
         r"\u0C01-\u0C03\u0C3E-\u0C56\u0D3E-\u0D44\u0D46-\u0D48\u0E30-\u0E3A\u0E47-\u0E4E\u0EB1-\u0EBC\u0EC8-\u0ECD")

# The lexer is %caseless, but JFlex does not widen character classes: literals are wrapped in (?i:...)
# and classes keep their case.
SPLET = r"&[aeiouAEIOU](?i:acute|grave|uml);"
LETTER = rf"(?:[{L}{EXTRA}]|{SPLET})"
DIGIT = rf"[{ND}\u07C0-\u07C9]"
LD = rf"(?:[{L}{EXTRA}{ND}\u07C0-\u07C9]|{SPLET})"
SGML = (r"<(?:[!?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.\-]*(?:[ ]+(?:[A-Za-z][A-Za-z0-9_:.\-]*[ ]*=[ ]*"
        r"(?:'[^']*'|\"[^\"]*\")|[A-Za-z][A-Za-z0-9_:.\-]*))*[ ]*/?|/[A-Za-z][A-Za-z0-9_:.\-]*)[ ]*>")
SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
SPACENL = r"(?:[ \t\u00A0\u2000-\u200A\u3000]|\r?\n|[\r\u2028\u2029\u000B\u000C\u0085])"
APOS = r"(?:['\u0092\u2019]|&(?i:apos);)"
APOSETC = rf"(?:{APOS}|[`\u0091\u2018\u201B])"
HYPHEN = r"[\-_\u058A\u2010\u2011]"
INSENTP = r"[,;:\u3001]"
WORD = rf"{LETTER}{LD}*(?:[.!?]{LETTER}{LD}*)*"
REDAUX = rf"{APOS}(?:[msdMSD]|(?i:re|ve|ll))"
SREDAUX = rf"(?i:n){APOSETC}(?i:t)"
ACRO_SPECIAL = r"(?i:canada|sino|korean|eu|japan|non)-(?i:u\.s)|(?i:u\.s\.-)(?i:u\.s\.s\.r|u\.k)"
ACRO = rf"(?:{ACRO_SPECIAL}|[A-Za-z](?:\.[A-Za-z])*)"
ACRO2 = rf"(?:{ACRO_SPECIAL}|[A-Za-z](?:\.[A-Za-z])+)"
THING_PART = rf"(?:[dDoOlL]{APOSETC}[{L}{ND}])?[{L}{ND}]+"
THING = rf"{THING_PART}(?:{HYPHEN}{THING_PART})*"
THINGA = r"[A-Z]+(?:(?:[+&]|&(?i:amp);)[A-Z]+)+"
HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:{ACRO2}\.|[A-Za-z0-9\u00AD]+))+"
ABBREV1 = (r"(?:(?i:jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec|mon|tues|tue|wed|thurs|thu|fri)"
           r"|(?i:ariz|ala)|A(?i:z|rk)|(?i:calif|colo|conn|ct|dak)|D(?i:el)|(?i:fla|ga)|I(?i:ll)|(?i:ind|kans?|ky)"
           r"|L(?i:a)|M(?i:ass|iss)|(?i:md|mich|minn|mont|mo|neb|nev|okla)|O(?i:re)|P(?i:a)|(?i:penn|tenn)|T(?i:ex)"
           r"|(?i:va|vt)|W(?i:ash)|(?i:wisc?|wyo)"
           r"|(?i:inc|cos?|corp)|(?i:pp?t)[ye](?i:s?)|(?i:ltd|plc|rt|bancorp|bhd|assn|univ|intl|sys)"
           r"|(?i:tel|est|ext|sq|jr|sr|bros|ed\.d|ph\.d|blvd|rd|esq|etc|al|seq|bldg))\.")
ABBREV4 = (r"(?:(?i:mrs|mr|ms)|M(?i:iss)|(?i:drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj"
           r"|sgt|cpl|pvt|capt|ste?|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det|mt|ft|adj|adv|asst|assoc|ens"
           r"|insp|mlle|mme|msgr|sfc)|(?i:vs|alex|wm|jos|cie|a\.k\.a|cf|treas|ph)|" + ACRO
           + r"|(?i:invt|elec|natl|dept)|(?i:m)[ft](?i:g))")
ACRONYM_NEXT = (rf"{SPACENL}+(?:A(?i:bout|ccording|dditionally|fter|n|s|t|)|B(?i:ut)|E(?i:arlier)"
                r"|H(?i:owever|ere|er|e)|I(?i:f|n|t)|L(?i:ast)|M(?i:any|ore|r\.|s\.)|N(?i:ow)|O(?i:nce|ne|ther|ur)"
                r"|S(?i:ince|ome|uch|he|o)|T(?i:heir|here|hese|hey|his|hat|hen|he)|W(?i:hen|hile|hat|e)|Y(?i:et|ou)"
                rf"|{SGML}){SPACENL}")
FILENAME = (rf"{LD}+(?:[.]{LD}+)*[.](?i:bat|bmp|class|cgi|cpp|c|dll|docx|doc|exe|gif|gz|html|htm|h|jar|java"
            r"|jpeg|jpg|mov|mp3|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|xml|x|zip)")
PHONE = (r"(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])[0-9]{3,4}"
         r"[\- \u00A0]?[0-9]{3,5}")
PHONE_DOTS = r"(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}"
MISCSYMBOL = (r"[+%&~^|\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00BA\u00D7\u00F7\u0387\u05BE\u05C0"
              r"\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D\u0703-\u070D"
              r"\u07F6-\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023\u2030-\u2038\u203B\u203E-\u2042"
              r"\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F"
              r"\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]")


def _latex_quotes(text: str, left: bool) -> str:
    text = re.sub(r"&apos;|'", "`" if left else "'", text)
    text = re.sub(r"\"|&quot;", "``" if left else "''", text)
    for pattern, quote in (("[\u0091\u2018\u201B\u2039]", "`"), ("[\u0092\u2019\u203A]", "'"),
                           ("[\u0093\u201C\u00AB]", "``"), ("[\u0094\u201D\u00BB]", "''")):
        text = re.sub(pattern, quote, text)
    return text


def _no_soft_hyphens(text: str) -> str:
    return text.replace("\u00AD", "") or "-"


FRACTIONS = {"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
CURRENCY = {"\u00A2": "cents", "\u00A3": "#", "\u0080": "$", "\u00A4": "$", "\u20A0": "$", "\u20AC": "$"}
BRACKETS = {"(": "-LRB-", ")": "-RRB-", "{": "-LCB-", "}": "-RCB-", "[": "-LSB-", "]": "-RSB-"}

# An action maps the matched token text to (token or None for no token, characters consumed); the
# consumed count is less than the match where the lexer pushes characters back.
Action = Callable[[str], tuple[str | None, int]]


def keep(t: str) -> tuple[str, int]:
    return t, len(t)


def push_back(n: int) -> Action:
    return lambda t: (t[:-n], len(t) - n)


def period_again(t: str) -> tuple[str, int]:
    # An abbreviation ending a sentence: the whole token, then its period once more as a token of its own.
    return t, len(t) - 1


def skip(t: str) -> tuple[None, int]:
    return None, len(t)


def acronym(t: str) -> tuple[str, int]:
    # "I." before "The ...": the letter, then the period next time; "U.S.": the whole, then its period again.
    return (t[:1], 1) if len(t) == 2 else (t, len(t) - 1)


def _sub(mapping: dict[str, str]) -> Action:
    return lambda t: ("".join(mapping.get(c, c) for c in t), len(t))


def _quotes(left: bool) -> Action:
    return lambda t: (_latex_quotes(t, left), len(t))


def _spaces(t: str) -> str:
    return t.replace(" ", "\u00A0")


def _amp(t: str) -> str:
    return re.sub("(?i:&amp;)", "&", t)


def _parens(t: str) -> str:
    return t.replace("(", "-LRB-").replace(")", "-RRB-")


# (alternatives, trailing context or None, action), in PTBLexer.flex's order; alternatives of one rule are
# tried separately and the longest kept, since Python's `re` takes the first alternative that matches.
RULES: list[tuple[list[str], str | None, Action]] = [
    ([r"(?i:c)[+][+]", r"(?i:c|f)#"], None, keep),
    ([r"(?i:cannot)"], None, push_back(3)),
    ([r"(?i:'twas)"], None, push_back(3)),
    ([r"(?i:'tis)"], None, push_back(2)),
    ([r"(?i:gonna|gotta|lemme|gimme|wanna)"], None, push_back(2)),
    ([SGML], None, lambda t: (_spaces(t), len(t))),
    ([r"&(?i:md|mdash|ndash);", r"[\u0096\u0097\u2013\u2014\u2015]"], None, lambda t: ("--", len(t))),
    ([r"&(?i:amp);"], None, lambda t: ("&", len(t))),
    ([r"&(?:(?i:ht|tl|ur|lr|qc|ql|qr|odq|cdq)|#[0-9]+);"], None, keep),
    ([WORD], REDAUX, lambda t: (_no_soft_hyphens(t), len(t))),
    ([r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"], SREDAUX, lambda t: (_no_soft_hyphens(t), len(t))),
    ([WORD], None, lambda t: (_no_soft_hyphens(t), len(t))),
    ([rf"{APOS}(?i:n){APOS}?", rf"[lLdDjJ]{APOS}", rf"(?i:dunkin|somethin|ol){APOS}", rf"{APOS}(?i:em)",
      rf"[A-HJ-XZn]{APOSETC}[{L}]{{2}}[{L}]*", rf"{APOS}[2-9]0(?i:s)", rf"{APOS}(?i:till?)",
      rf"[{L}]+[aeiouyAEIOUY]{APOSETC}[aeiouA-Z][{L}]*", rf"{APOS}(?i:cause)", r"(?i:cont'd)\.?",
      r"(?i:'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)", rf"(?i:o){APOSETC}(?i:o)"], None, keep),
    ([rf"(?i:y){APOS}"], rf"[{L}]", keep),
    ([r"(?i:https?)://[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},\-]"], None, keep),
    ([r"(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}|(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+"
      r"(?i:com|net|org|edu))(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},\-])?"], None, keep),
    ([r"(?:&(?i:lt);|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@(?:[^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*"
      r"[^ \t\n\f\r\"<>|(){}.\u00A0]+(?:&(?i:gt);|>)?"], None, keep),
    ([r"@[a-zA-Z_][a-zA-Z_0-9]*", rf"#{LETTER}+"], None, keep),
    ([REDAUX], r"[^A-Za-z]", _quotes(False)),
    ([SREDAUX], r"[^A-Za-z]", _quotes(False)),
    ([rf"{DIGIT}{{1,2}}[\-/]{DIGIT}{{1,2}}[\-/]{DIGIT}{{2,4}}"], None, keep),
    ([rf"[\-+]?{DIGIT}*(?:[.:,\u00AD\u066B\u066C]{DIGIT}+)+", rf"[\-+]?{DIGIT}+"], None,
     lambda t: (_no_soft_hyphens(t), len(t))),
    ([r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)"], None, keep),
    ([rf"(?:{DIGIT}{{1,4}}[\- \u00A0])?{DIGIT}{{1,4}}(?:\\?/|\u2044){DIGIT}{{1,4}}"], None,
     lambda t: (_spaces(t), len(t))),
    ([r"[\u00BC\u00BD\u00BE\u2153-\u215E]"], None, _sub(FRACTIONS)),
    ([r"-(?i:rrb|lrb|rcb|lcb|rsb|lsb)-", r"(?i:c\.d\.s|pro-|anti-)", r"(?i:s)(?:&|&(?i:amp);)(?i:p-500|ls)",
      rf"(?i:cap){APOS}(?i:n)", rf"(?i:c){APOS}(?i:est)"], None, lambda t: (_amp(t), len(t))),
    ([r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"], None, keep),
    ([r"[A-Z]*\$", "#"], None, keep),
    ([r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]"], None,
     _sub(CURRENCY)),
    ([rf"{ACRO}\."], ACRONYM_NEXT, acronym),
    ([r"(?i:ca|figs?|prop|nos?|art|bldg|pp|op)\."], rf"{SPACENL}?[{ND}]", keep),
    ([r"(?:(?i:pt)[eyEY]|(?i:co))\."], rf"{SPACE}(?i:ltd|lim)", keep),
    ([ABBREV1], rf"{SPACENL}(?:{SPACENL}|[{LU}]|{SGML})", period_again),
    ([ABBREV1], r"(?s:..)", keep),
    ([ABBREV1], None, period_again),
    ([rf"{ABBREV4}\."], None, keep),
    ([ABBREV4], SPACE, keep),
    ([ACRO], SPACENL, keep),
    ([rf"{APOS}[0-9][0-9]"], SPACENL, keep),
    ([FILENAME], rf"(?:{SPACENL}|[.?!,])", keep),
    ([rf"{WORD}\."], INSENTP, lambda t: (_no_soft_hyphens(t), len(t))),
    ([PHONE, PHONE_DOTS], None, lambda t: (_parens(_spaces(t)), len(t))),
    ([r"\"|&(?i:quot);"], r"[A-Za-z0-9$]", _quotes(True)),
    ([r"\"|&(?i:quot);"], None, _quotes(False)),
    ([r"\x7f"], None, skip),
    ([r"<|&(?i:lt);"], None, lambda t: ("<", len(t))),
    ([r">|&(?i:gt);"], None, lambda t: (">", len(t))),
    ([r"[<>]?[:;=][\-o*']?[()DPdpO\\{@|\[\]]"], r"[^A-Za-z0-9]", lambda t: (_parens(t), len(t))),
    ([r"[\^x=~<>]\.\[\^x=~<>\]", r"[\-\^x=~<>']_[\-\^x=~<>']", r"\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)",
      r"\([\^x=~<>']-[\^x=~<>'`]\)"], None, lambda t: (_parens(t), len(t))),
    ([r"[{}\[\]()]"], None, _sub(BRACKETS)),
    ([r"-+"], None, lambda t: ("--" if 3 <= len(t) <= 4 else t, len(t))),
    ([r"\.{3,5}", r"(?:\.[ \u00A0]){2,4}\.", r"[\u0085\u2026]"], None, lambda t: ("...", len(t))),
    ([r"@+|#+|_+"], None, keep),
    ([r"\*+", r"(?:\\\*){1,3}"], None, keep),
    ([INSENTP], None, keep),
    ([r"[?!]+"], None, keep),
    ([r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002=/]"], None, keep),
    ([rf"{HTHING}\."], INSENTP, lambda t: (_no_soft_hyphens(t), len(t))),
    ([HTHING], None, lambda t: (_no_soft_hyphens(t), len(t))),
    ([rf"{THING}\."], INSENTP, keep),
    ([THING], None, keep),
    ([rf"{THINGA}\."], INSENTP, lambda t: (_amp(t), len(t))),
    ([THINGA], None, lambda t: (_amp(t), len(t))),
    (["'"], r"[A-Za-z][^ \t\n\r\u00A0]", _quotes(True)),
    ([REDAUX, SREDAUX, APOS, "''", "[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091-\u0094\u201E\u201F\u2039\u203A"
      "\u00AB\u00BB]{1,2}"], None, _quotes(False)),
    ([r"<<|>>"], None, keep),
    ([MISCSYMBOL], None, keep),
    ([rf"\x00|{SPACE}+|[\u200B\u200E\u200F\uFEFF]", r"&(?i:nbsp);"], None, skip),
    ([r"."], None, skip),  # untokenizable: deleted (the lexer's default, FIRST_DELETE)
]
_COMPILED = [([re.compile(f"(?P<tok>{alt})(?:{tail})" if tail else alt) for alt in alts], tail is not None, action)
             for alts, tail, action in RULES]


def _utf16_units(text: str) -> str:
    """Characters outside the BMP as the two surrogates Java reads (each untokenizable on its own)."""
    out = []
    for c in text:
        code = ord(c) - 0x10000
        out.append(c if code < 0 else chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF)))
    return "".join(out)


def lex(text: str) -> list[str]:
    """The PTB tokens of one line of text, before lowercasing and the punctuation filter."""
    text = _utf16_units(text) + "\n"
    tokens: list[str] = []
    pos, end = 0, len(text) - 1
    while pos < end:
        best, best_length = None, 0
        for patterns, trailing, action in _COMPILED:
            for pattern in patterns:
                match = pattern.match(text, pos)
                # Strictly longer only: on equal lengths the earlier rule wins.
                if match is not None and match.end() - pos > best_length:
                    best, best_length = (match, trailing, action), match.end() - pos
        match, trailing, action = best
        token, consumed = action(match.group("tok") if trailing else match.group())
        if token is not None:
            tokens.append(token)
        pos += consumed
    return tokens


# Words of ASCII letters between spaces are tokens as they stand (no rule outmatches a whole word there),
# except the assimilations the lexer splits: the common case of generated captions, without the lexer.
_PLAIN = re.compile("[A-Za-z ]*")
_SPLIT = {"cannot": "can not", "gonna": "gon na", "gotta": "got ta", "lemme": "lem me", "gimme": "gim me",
          "wanna": "wan na"}


@lru_cache(maxsize=1 << 16)
def ptb_tokenize(caption: str) -> str:
    """`caption` as pycocoevalcap's `PTBTokenizer().tokenize` returns it: PTB tokens, lowercased, its
    PUNCTUATIONS dropped, joined by single spaces."""
    if _PLAIN.fullmatch(caption):
        return " ".join(_SPLIT.get(word, word) for word in caption.lower().split())
    tokens = lex(_LINE_BREAKS.sub(" ", caption))
    # Java writes a token's surrogate pairs (an emoji inside a URL) as the one character they encode.
    line = " ".join(tokens).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    line = line.lower()  # Java's toLowerCase(Locale.ENGLISH)
    return " ".join(t for t in line.rstrip().split(" ") if t not in PUNCTUATIONS)
