"""A word-level tokenizer that reproduces fastai's default text processing, for converted fastai models.

fastai (v1 and v2) prepares text with a chain of Python rules, then splits it into words with spaCy's English
tokenizer, then looks the words up in a vocabulary (``itos``) that starts with its special tokens::

    xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj ...

A model converted from fastai only works well if it sees the token ids it was trained on, so
``build_fastai_tokenizer(itos)`` returns a plain ``transformers.PreTrainedTokenizerFast`` whose Rust pipeline
reimplements those rules; ``AutoTokenizer.from_pretrained`` loads it back without custom code:

  normalizer (in fastai's order)
    * fix_html: the literal replacements of fastai (``<br />`` -> newline, ``...`` -> `` …``, ``#39;`` -> ``'``
      ...), then the HTML entities that occur in practice (a table; Python's ``html.unescape`` knows 2,000+);
    * replace_rep: ``cccc`` -> `` xxrep 4 c `` (runs of 3+ identical non-space characters);
    * replace_wrep: ``w w w`` -> `` xxwrep 3 w `` (3+ identical words separated by whitespace);
    * spec_add_spaces (spaces around ``/ # \\``), rm_useless_spaces (runs of spaces -> one space);
    * replace_all_caps (``xxup`` before words of 2+ capitals), replace_maj (``xxmaj`` before Capitalized
      words), lowercase, strip; ``xxbos`` is added by the post-processor;
  pre-tokenizer
    * whitespace handled as spaCy does (one space separates tokens, any other whitespace is a token, spaces inside
      such a token become ``▁`` as fastai's ``replace_space`` does), then a regular-expression approximation of
      spaCy's English prefix / suffix / infix rules and of its exceptions (contractions, abbreviations, emoticons).

Counting (``xxrep 12 !``) needs arithmetic that regular-expression replacements do not have: the rules write the
count in unary with marker characters (Unicode noncharacters U+FDD0-U+FDD7, which never occur in text), then
turn it into decimal digits with a fixed sequence of replacements (exact up to 9,999 repetitions).

Agreement with fastai 2.8.12 + spaCy 3.8 (``scripts/bench_fastai_tokenizer_agreement.py``, held-out IMDb test
reviews): 99.80% of 1,000 reviews get exactly fastai's token sequence, 99.9986% of tokens agree (1 - token edit
distance / fastai tokens); 99.86% and 99.999% on 5,000 reviews. Ids agree as often as tokens. The differences
left come from what this approximation does not do:

* ``html.unescape`` is a short table (numeric entities such as ``&#345;`` stay as text);
* fastai writes ``xxwrep 3 w .`` with a space before the character after the repetition, this writes
  ``xxwrep 3 w.`` (the same tokens whenever spaCy splits that character off, as it does for punctuation);
* spaCy's exception list (contractions, abbreviations, emoticons, times) is covered for the forms seen in English
  web text, not entry by entry, and its re-merging of special cases across prefix/suffix splits is approximated;
* runs of more than 40 prefix or suffix characters in one piece are treated as ordinary characters (this keeps the
  time linear in the length of the text).

Speed on a shared 2-core machine: about 900-1,800 reviews/s for ``tokenizer(texts)`` against about 400 for fastai
(rules + spaCy) in one process.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = FASTAI_SPECIAL_TOKENS = (
    "xxunk",
    "xxpad",
    "xxbos",
    "xxeos",
    "xxfld",
    "xxrep",
    "xxwrep",
    "xxup",
    "xxmaj",
)

# Marker characters used while rules are applied (noncharacters: never part of real text).
_ONE, _TEN, _HUNDRED, _THOUSAND = "\ufdd0", "\ufdd1", "\ufdd2", "\ufdd3"  # unary digits of a count, per place
_ZERO = "\ufdd4"  # a 0 digit of a count
_REP_LABEL, _WREP_LABEL, _WREP_MARK = "\ufdd5", "\ufdd6", "\ufdd7"
_PLACES = (_THOUSAND, _HUNDRED, _TEN, _ONE)  # most significant first

# fastai's fix_html, in its order: (old, new) literal replacements.
_HTML_LITERALS = (
    ("#39;", "'"),
    ("amp;", "&"),
    ("#146;", "'"),
    ("nbsp;", " "),
    ("#36;", "$"),
    ("\\n", "\n"),
    ("quot;", "'"),
    ("<br />", "\n"),
    ('\\"', '"'),
    ("<unk>", UNK),
    (" @.@ ", "."),
    (" @-@ ", "-"),
    ("...", " …"),
)
# The HTML entities left after those replacements that occur in web text (fastai then runs html.unescape, which
# knows every entity; each table entry costs one pass over the text, so the table is kept short).
_HTML_ENTITIES = {
    "&lt;": "<",
    "&gt;": ">",
    "&hellip;": "…",
    "&#8230;": "…",
    "&mdash;": "—",
    "&#8212;": "—",
    "&ndash;": "–",
    "&#8211;": "–",
    "&rsquo;": "’",
    "&#8217;": "’",
    "&lsquo;": "‘",
    "&#8216;": "‘",
    "&ldquo;": "“",
    "&#8220;": "“",
    "&rdquo;": "”",
    "&#8221;": "”",
    "&eacute;": "é",
    "&#233;": "é",
}


def _replace(pattern: str, content: str, regex: bool = True) -> normalizers.Replace:
    """A Rust ``Replace`` of every match of ``pattern`` (a regular expression, or a literal) by ``content``."""
    return normalizers.Replace(Regex(pattern) if regex else pattern, content)


def fix_html_rules() -> list[normalizers.Normalizer]:
    """fastai's ``fix_html``: its literal replacements, then a table of common HTML entities."""
    literals = [_replace(old, new, regex=False) for old, new in _HTML_LITERALS]
    return literals + [_replace(old, new, regex=False) for old, new in _HTML_ENTITIES.items()]


def replace_rep_rules() -> list[normalizers.Normalizer]:
    """fastai's ``replace_rep``: a run of n >= 3 identical non-space characters ``c`` becomes `` xxrep n c ``.

    Every character of the run but the last becomes a unary digit, the block gets a label in front and one more
    digit (so it counts n), then a space before and after the kept character."""
    return [
        # chars followed by two copies of themselves, or between two copies: all of a run but its last char
        _replace(r"(\S)(?=\1\1)|(?<=(\S))\2(?=\2)", _ONE),
        _replace(f"(?<!{_ONE}){_ONE}", f" {_REP_LABEL}{_ONE}"),
        _replace(f"{_ONE}(?!{_ONE})", f"{_ONE}{_ONE} "),
        _replace(f"(?<={_ONE} \\S)", " "),
    ]


def replace_wrep_rules() -> list[normalizers.Normalizer]:
    """fastai's ``replace_wrep``: n >= 3 identical words separated by whitespace become `` xxwrep n w``.

    Each word that starts a chain of 3+ gets a mark (replacing the whitespace before it, as fastai does); each
    marked word followed by another mark counts one, and the last marked word with the two after it count three
    (the last word of the chain is kept)."""
    return [
        _replace(r"\s(?=(\w+)\s+\1\s+\1(?:\s|\W|\z))", f" {_WREP_LABEL}{_WREP_MARK}"),
        _replace(f"{_WREP_MARK}\\w+\\s+{_WREP_LABEL}", _ONE),
        _replace(f"{_WREP_MARK}\\w+\\s+\\w+\\s+", f"{_ONE * 3} "),
    ]


def write_count_rules() -> list[normalizers.Normalizer]:
    """Turns the unary counts left by ``replace_rep_rules`` / ``replace_wrep_rules`` (a block of ones followed by
    a space) into decimal digits, and the labels into ``xxrep`` / ``xxwrep``."""
    rules = []
    for low, high in zip(_PLACES[::-1], _PLACES[-2::-1]):  # carry: ten of a place make one of the next place
        rules.append(_replace(low * 10, high, regex=False))
    for index in range(1, len(_PLACES)):  # a 0 digit where a higher place is written and this one is empty
        lower = "".join(_PLACES[index + 1 :])
        # (the zero pattern first: a zero inserted by the other pattern must not be taken for a higher digit)
        for before in (_ZERO, _PLACES[index - 1]) if index > 1 else (_PLACES[0],):
            rules.append(_replace(f"{before}(?=[{lower} ])", before + _ZERO))
    for place in _PLACES:
        rules += [_replace(place * digit, str(digit), regex=False) for digit in range(9, 0, -1)]
    rules.append(_replace(_ZERO, "0", regex=False))
    rules.append(_replace(_REP_LABEL, f"{TK_REP} ", regex=False))
    rules.append(_replace(_WREP_LABEL, f"{TK_WREP} ", regex=False))
    return rules


def spacing_rules() -> list[normalizers.Normalizer]:
    """fastai's ``spec_add_spaces`` (spaces around ``/``, ``#``, ``\\``) and ``rm_useless_spaces``."""
    return [_replace(c, f" {c} ", regex=False) for c in "/#\\"] + [_replace(" {2,}", " ")]


def case_rules() -> list[normalizers.Normalizer]:
    """fastai's ``replace_all_caps``, ``replace_maj`` and ``lowercase`` (minus ``xxbos``, added after)."""
    word_start, word_end = r"(?<=\s)", r"(?:\s|\z)"
    all_caps = f"[A-Z][^a-z\\s]*{word_end}"
    return [
        _replace(f"{word_start}(?=[A-Z][^a-z\\s]+{word_end})", f"{TK_UP} "),
        _replace(f"{word_start}(?=[A-Z][^A-Z\\s]+{word_end})(?!{all_caps})", f"{TK_MAJ} "),
        normalizers.Lowercase(),
        normalizers.Strip(),
    ]


def fastai_normalizer() -> normalizers.Normalizer:
    """fastai's default rules (``defaults.text_proc_rules``) as one Rust normalizer, plus ``replace_space`` for
    the whitespace tokens spaCy keeps (a space after other whitespace becomes ``▁``)."""
    # Every rule after fix_html finds word starts after whitespace: a leading space stands for the start of the
    # text (and avoids insertions at offset 0, which tokenizers' alignment tracking does not support).
    rules = (
        fix_html_rules()
        + [normalizers.Prepend(" ")]
        + replace_rep_rules()
        + replace_wrep_rules()
        + write_count_rules()
    )
    rules += spacing_rules() + case_rules() + [_replace(r"(?<=\s) ", "▁")]
    return normalizers.Sequence(rules)


# ----------------------------------------------------------------------------------------------------------
# Word split: an approximation of spaCy's English tokenizer (which fastai uses) with regular expressions.
# spaCy splits text on single spaces, then strips prefixes (opening punctuation, currency...) from the left and
# suffixes (closing punctuation, "'s", a final period...) from the right of each piece, then splits what is left
# at infixes (a hyphen between letters...), unless a piece is one of its exceptions (contractions, "e.g."...).
# Here one regular expression finds the tokens of a piece from left to right: an exception, a prefix while only
# prefixes came before, a suffix when only suffixes are left, an infix, or a run of other characters up to the
# next infix or to the final suffixes. Runs are matched atomically (``(?>...)``), so no input backtracks badly.

_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_PUNCT = "…,:;!?¿؟¡()\\[\\]{}<>_#*&。？！，、；：～·।،۔؛٪"
_CURRENCY = "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿"
_UNITS = "km²|km³|km/h|kmh|km|m²|m³|m/s|mph|mbar|mb|mm²|mm³|mm|mg|m|dm²|dm³|dm|cm²|cm³|cm|hpa|ha|µm|µg|nm|yd|in|ft|kg|g|t|lb|oz|pa|kb|gb|tb|%"
_PREFIX_CHARS = f"§%=—–+.{_PUNCT}{_QUOTES}{_CURRENCY}\\p{{So}}"
_PREFIX = f"''|\\.\\.+|……|[§%=—–{_PUNCT}{_QUOTES}{_CURRENCY}]|\\+(?![0-9])|\\p{{So}}"
_SUFFIX = (  # one suffix token ("''" is one too, see _token_pattern)
    f"['’]s|\\.\\.+|……|[{_PUNCT}{_QUOTES}—–]|\\p{{So}}|(?<=[0-9])(?:\\+|[{_CURRENCY}]|(?:{_UNITS})(?![a-z]))"
    f"|(?<=[0-9\\p{{Ll}}%²\\-+{_PUNCT}{_QUOTES}?:|\\\\])\\."
)
_INFIX = (
    f"\\.\\.+|…|\\p{{So}}|(?<=[0-9])[+\\-*^](?=[0-9-])|(?<=[\\p{{Ll}}{_QUOTES}])\\.(?=[\\p{{Lu}}{_QUOTES}])"
    "|(?<=\\p{L}),(?=\\p{L})|(?<=[\\p{L}0-9])(?:---|--|-|–|—|——|~)(?=\\p{L})|(?<=[\\p{L}0-9])[:<>=/](?=\\p{L})"
)
_INFIX_CHARS = "\\-–—~,:<>=/….+*^"
# The text is split into tokens by one regular expression; pieces are the runs of non-whitespace characters.
_PIECE_START, _PIECE_END = "(?<![^\\s▁])", "(?![^\\s])"
# Only prefixes before / only suffixes after the current position in its piece. Both look at most _MAX_AFFIXES
# characters / tokens away, so that a long piece of punctuation takes linear, not quadratic, time.
_MAX_AFFIXES = 40
_AT_START = (
    f"(?:{_PIECE_START}|(?<=[{_PREFIX_CHARS}])(?<=(?:\\A|[\\s▁])[{_PREFIX_CHARS}]{{1,{_MAX_AFFIXES}}}))"
)
_SUFFIX_RUN = f"(?>(?:{_SUFFIX}){{0,{_MAX_AFFIXES}}}){_PIECE_END}"
_TO_END = f"(?={_SUFFIX_RUN})"

# Emoticons: spaCy finds those made of prefix / suffix characters anywhere (``x:)`` -> ``x`` ``:)``), the
# others only as a whole piece.
_EMOTICONS = (
    ":)) :(( :-) :-( :-] :-| :-* :'-( :'-) :'( :') :) :( :] :| :* :> ;-) ;) =) =( =] (= ): (: (-: (-; )-:"
)
_WORDLIKE_EMOTICONS = (
    ":-/ :-p :-o :p :o :x :3 =/ >:( <33 <3 </3 8-) 8) ^___^ ^_^ ^^ -__- -_- ._. (^_^) xd xp xoxo o.o o_o o.0 o_0 "
    "0.0 0_0 v.v v_v >.< @_@ ;_; t_t"
)
# Words spaCy keeps whole although they start or end with a prefix or suffix (also next to an infix).
_WHOLE_WORDS = (
    "a.m. p.m. e.g. i.e. vs. co. v. 'bout 'cause 'cos 'coz 'cuz 'em 'nuff ol' havin' nothin' somethin' goin' "
    "doin' lovin'"
)
_NEGATABLE = (
    "would|could|should|might|must|do|does|did|ca|wo|ai|sha|is|are|was|were|have|has|had|need|dare|ought|may"
)
_WH = "there|who|what|where|when|why|how"
# Exceptions that split a word in two, as (first token, second token) patterns: ``don't`` -> ``do`` ``n't``.
_SPLIT_WORDS = (
    (f"(?:{_NEGATABLE})", "n['’]?t"),
    ("i", "['’]?m"),
    (f"(?:i|you|we|they|{_WH}|these|those|would|could|should|might|must)", "['’]?ve"),
    ("(?:i|he|she|we)", "['’]ll"),
    (f"(?:you|it|they|that|this|these|those|{_WH})", "['’]?ll"),
    ("she", "['’]d"),
    (f"(?:i|you|he|it|we|they|that|this|these|those|{_WH})", "['’]?d"),
    ("(?:we|who)", "['’]re"),
    ("(?:you|they|these|those|there|what|where|when|why|how)", "['’]?re"),
    (f"(?:he|she|that|this|{_WH})", "s"),
    ("gon", "na"),
    ("got", "ta"),
    ("can", "not"),
    ("c'm", "on"),
    ("y'", "all"),
    ("(?:1[0-2]|[1-9])", "(?:[ap]m|[ap]\\.m\\.)"),  # 10pm -> 10 pm
)
# spaCy keeps web addresses whole (``yank-haters.the`` too): domain labels, a lowercase top-level domain, an
# optional port and path.
_URL_CHAR = "a-z0-9\\u00a1-\\uffff"
_URL = (
    f"(?>[^\\s@]+@)?(?:(?:[{_URL_CHAR}][{_URL_CHAR}_-]{{0,62}})?[{_URL_CHAR}]\\.)+"
    "\\p{Ll}{2,63}(?::\\d{2,5})?(?:[/?#]\\S*?)?"
)


def _alternation(words: str) -> str:
    """An alternation matching any of the space-separated ``words`` literally, longest first."""
    special = set("\\^$.|?*+()[]{}")
    ordered = sorted(words.split(), key=len, reverse=True)
    return "|".join("".join(f"\\{c}" if c in special else c for c in word) for word in ordered)


def _token_alternatives() -> list[str]:
    """The alternatives of ``_token_pattern``, in priority order. Each starts with a cheap test of the next
    character (a lookahead or lookbehind) so that alternatives that cannot match are left quickly."""
    emoticon, wordlike_emoticon = _alternation(_EMOTICONS), _alternation(_WORDLIKE_EMOTICONS)
    first_of_split = "|".join(f"{first}(?={second}{_TO_END})" for first, second in _SPLIT_WORDS)
    split_letters = "|".join(first + second.replace("['’]?", "") for first, second in _SPLIT_WORDS)
    not_word = "(?=[^\\p{L}0-9])"
    return [
        # fast paths for most pieces: a word of letters, alone or before one punctuation mark
        f"{_PIECE_START}(?!(?:{split_letters}){_PIECE_END})\\p{{L}}+{_PIECE_END}",
        f"{_PIECE_START}(?!(?:{split_letters}|vs|co)[.,!?;:]{_PIECE_END})\\p{{L}}{{2,}}(?=[.,!?;:]{_PIECE_END})",
        "[^\\S ][\\s▁]*",  # a whitespace token: whitespace but a single space, with the spaces after it
        f"{_AT_START}(?:{first_of_split}|['’]s(?!\\.){_TO_END}|(?:{wordlike_emoticon}){_TO_END})",
        f"(?=[a-z'])(?:{_AT_START}|(?<=[{_INFIX_CHARS}]))(?:{_alternation(_WHOLE_WORDS)}|[a-z]\\.)"
        f"(?=(?:{_INFIX})|{_TO_END})",
        # second tokens of split words (``id.`` -> ``i`` ``d.``: spaCy joins ``d`` and ``.`` again)
        f"(?=[apdmsn])(?:(?<=[0-9])(?:[ap]m|[ap]\\.m\\.)|(?<=[a-z])[dms]\\.){_TO_END}|n['’]t(?=['’]ve{_TO_END})",
        f"(?=[:;=()])(?:{_AT_START}|(?=(?:{emoticon}){_TO_END}))(?:{emoticon})",
        f"{not_word}{_AT_START}(?:{_PREFIX})",
        f"{_AT_START}(?=[^.\\s]*\\.\\p{{Ll}}){_URL}{_TO_END}",
        f"(?:{not_word}|(?<=[0-9]))(?:''|{_SUFFIX}){_TO_END}",
        f"{not_word}(?<=[^\\s▁])(?:{_INFIX})",
        # the rest, up to an infix or the final suffixes (a letter can only start a suffix after a digit)
        f"\\S(?>(?:[0-9]+|(?<![0-9])\\p{{L}}+|(?!{_SUFFIX_RUN}|(?:{_INFIX}))\\S)*)",
    ]


def _token_pattern() -> str:
    """The regular expression whose successive matches are the tokens of one piece (text between spaces)."""
    return "|".join(_token_alternatives())


def fastai_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """spaCy's word split as fastai uses it: a single space separates tokens, any other whitespace (with the
    spaces after it, already turned into ``▁`` by the normalizer) is a token of its own, and the runs of other
    characters are split by ``_token_pattern``."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(" ", behavior="removed"),
            pre_tokenizers.Split(Regex(_token_pattern()), behavior="isolated"),
        ]
    )


def _unique_tokens(itos: Sequence[str]) -> list[str]:
    """The vocabulary with repeated entries renamed (fastai pads its vocabulary to a multiple of 8 with copies of
    ``xxfake``): a word-level vocabulary maps each token to one id, so copy ``i`` becomes ``xxdup{i}``."""
    seen: set[str] = set()
    tokens = []
    for index, token in enumerate(itos):
        tokens.append(token if token not in seen else f"xxdup{index}")
        seen.add(tokens[-1])
    return tokens


def check_fastai_vocab(itos: Sequence[str]) -> None:
    """Raises ``ValueError`` unless ``itos`` is a list of strings holding fastai's special tokens."""
    if isinstance(itos, (str, bytes)) or not all(isinstance(token, str) for token in itos):
        raise ValueError("a fastai vocabulary is a list of strings (fastai's itos / learn.dls.vocab)")
    missing = [token for token in (UNK, PAD, BOS, EOS) if token not in itos]
    if missing:
        raise ValueError(
            f"the vocabulary lacks fastai's special tokens {missing}; is it a fastai vocabulary?"
        )


def build_fastai_tokenizer(itos: Sequence[str], model_max_length: int = 1_000_000) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` that tokenizes text as fastai does and maps tokens to the ids of ``itos``.

    Args:
        itos: fastai's vocabulary, id order (``learn.dls.vocab`` in fastai v2, ``itos_*.pkl`` in v1).
        model_max_length: the longest sequence the model accepts (truncation ``max_length`` default).

    Returns:
        A tokenizer that starts every text with ``xxbos`` (``xxbos A xxeos B`` for pairs), maps unknown words to
        ``xxunk``, pads with ``xxpad`` on the right and returns ``input_ids`` and ``attention_mask``. It is a
        plain ``PreTrainedTokenizerFast``: ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` need no
        custom code.
    """
    check_fastai_vocab(itos)
    tokens = _unique_tokens(itos)
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token=UNK))
    backend.normalizer = fastai_normalizer()
    backend.pre_tokenizer = fastai_pre_tokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0",
        pair=f"{BOS}:0 $A:0 {EOS}:0 $B:1",
        special_tokens=[(BOS, tokens.index(BOS)), (EOS, tokens.index(EOS))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


__all__ = [
    "FASTAI_SPECIAL_TOKENS",
    "build_fastai_tokenizer",
    "check_fastai_vocab",
    "fastai_normalizer",
    "fastai_pre_tokenizer",
]
