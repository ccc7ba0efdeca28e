"""Rule-based reward functions: a registry of small pure functions.

Every function has the signature `fn(prompt, response, reference, **params) -> float`; `reference`
is None for functions that do not use one. `RULES` maps a name to a `Rule` that records the
function, its documented range and whether it needs a reference. `nexus.models.rules` combines
them into a reward model. Higher is always better; the toxicity penalty is <= 0.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from nexus.execution import run_program


@dataclass(frozen=True)
class Rule:
    """A registered reward function.

    Attributes:
        name: registry key.
        fn: `fn(prompt, response, reference, **params) -> float`.
        low, high: the documented range of `fn`.
        needs_reference: whether `fn` reads `reference`.
        check: validates the keyword parameters at construction; raises ValueError.
    """

    name: str
    fn: Callable[..., float]
    low: float
    high: float
    needs_reference: bool = False
    check: Callable[[dict], None] | None = None

    def params(self) -> dict[str, Any]:
        """Keyword parameters of `fn` and their defaults."""
        return {p.name: p.default for p in inspect.signature(self.fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}


RULES: dict[str, Rule] = {}


def register_rule(name: str, low: float, high: float, needs_reference: bool = False,
                  check: Callable[[dict], None] | None = None):
    """Decorator adding a function to `RULES` under `name` (a checkpoint refers to it by name)."""
    def add(fn: Callable[..., float]) -> Callable[..., float]:
        if name in RULES:
            raise ValueError(f"rule function {name!r} is already registered")
        RULES[name] = Rule(name, fn, low, high, needs_reference, check)
        return fn
    return add


# ---------------------------------------------------------------- text helpers

_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def tokenize(text: str) -> list[str]:
    """Words (\\w+) and single punctuation marks, case kept: the tokens of BLEU and ROUGE-L."""
    return _TOKEN.findall(text)


def extract_code(text: str) -> str:
    """The first ```-fenced block of `text` if it has one, else `text` itself."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


@lru_cache(maxsize=8)
def load_word_list(path: str | None = None) -> frozenset[str]:
    """Lower-cased words of a list file (one a line, '#' comments); None: the packaged list."""
    if path is None:
        text = resources.files("nexus.data").joinpath("toxic_words.txt").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line)


# ---------------------------------------------------------------- checks of parameters

def _check_length(p: dict) -> None:
    if p["unit"] not in ("words", "chars"):
        raise ValueError(f"unit must be 'words' or 'chars', got {p['unit']!r}")
    for key in ("low", "high"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 0:
            raise ValueError(f"{key} must be an integer >= 0, got {p[key]!r}")
    if p["low"] > p["high"] or p["high"] == 0:
        raise ValueError(f"need 0 <= low <= high and high > 0, got low={p['low']}, high={p['high']}")
    if p["tolerance"] is not None and not (isinstance(p["tolerance"], (int, float)) and p["tolerance"] > 0):
        raise ValueError(f"tolerance must be a number > 0 or None, got {p['tolerance']!r}")


def _check_positive(*keys: str) -> Callable[[dict], None]:
    def check(p: dict) -> None:
        for key in keys:
            if isinstance(p[key], bool) or not isinstance(p[key], (int, float)) or not p[key] > 0:
                raise ValueError(f"{key} must be a number > 0, got {p[key]!r}")
    return check


def _check_format(p: dict) -> None:
    if p["mode"] not in ("fullmatch", "search"):
        raise ValueError(f"mode must be 'fullmatch' or 'search', got {p['mode']!r}")
    try:
        re.compile(p["pattern"])
    except (re.error, TypeError) as err:
        raise ValueError(f"pattern {p['pattern']!r} is not a valid regular expression: {err}") from err


def _check_bleu(p: dict) -> None:
    if isinstance(p["max_n"], bool) or not isinstance(p["max_n"], int) or p["max_n"] < 1:
        raise ValueError(f"max_n must be an integer >= 1, got {p['max_n']!r}")


# ---------------------------------------------------------------- the rules

@register_rule("length", 0.0, 1.0, check=_check_length)
def length(prompt: str, response: str, reference: None, *, low: int = 1, high: int = 512,
           unit: str = "words", tolerance: float | None = None) -> float:
    """1 inside [low, high] (words: whitespace-separated; or chars), falling linearly outside.

    At distance d outside the range the reward is max(0, 1 - d / tolerance); tolerance defaults to
    `low` below the range (so an empty response gets 0) and to `high` above it (0 at 2 * high).
    """
    n = len(response.split()) if unit == "words" else len(response)
    if low <= n <= high:
        return 1.0
    distance, scale = (low - n, low) if n < low else (n - high, high)
    return max(0.0, 1.0 - distance / (tolerance or scale))


@register_rule("repetition", 0.0, 1.0)
def repetition(prompt: str, response: str, reference: None) -> float:
    """Unique-word ratio: distinct lower-cased \\w+ words / all words (1: no word repeats).

    A response without words has nothing repeated and gets 1.
    """
    words = _WORD.findall(response.lower())
    return len(set(words)) / len(words) if words else 1.0


@register_rule("toxicity", -1.0, 0.0, check=_check_positive("per_hit"))
def toxicity(prompt: str, response: str, reference: None, *, per_hit: float = 0.5,
             words_file: str | None = None) -> float:
    """Keyword penalty: -min(1, per_hit * number of listed words in the response).

    Words are lower-cased \\w+ tokens matched against the list in `words_file` (one word a line)
    or the list shipped in `nexus/data/toxic_words.txt`. A keyword list misses paraphrase and
    context; it is a cheap guard, not a classifier.
    """
    listed = load_word_list(words_file)
    hits = sum(word in listed for word in _WORD.findall(response.lower()))
    return -min(1.0, per_hit * hits) if hits else 0.0


# The arithmetic task's solution format: one "x op y = z" per line (nexus.tasks.arithmetic).
_STEP = r"-?\d+ *[-+*] *\d+ *= *-?\d+"
ARITHMETIC_FORMAT = rf"{_STEP}(?: *\n *{_STEP})*"


@register_rule("format", 0.0, 1.0, check=_check_format)
def format_match(prompt: str, response: str, reference: None, *, pattern: str = ARITHMETIC_FORMAT,
                 mode: str = "fullmatch") -> float:
    """1 if the regex matches (`fullmatch`: all of the stripped response; `search`: anywhere), else 0."""
    text = response.strip()
    found = re.fullmatch(pattern, text) if mode == "fullmatch" else re.search(pattern, text)
    return 1.0 if found else 0.0


# ---------------------------------------------------------------- final answers

ANSWER_PARSERS: dict[str, Callable[[str], str | None]] = {}


def register_answer_parser(name: str):
    """Decorator adding `parse(text) -> answer string or None` to `ANSWER_PARSERS` under `name`
    (`math_correct(answer=name)`; a checkpoint refers to it by name)."""
    def add(fn: Callable[[str], str | None]) -> Callable[[str], str | None]:
        if name in ANSWER_PARSERS:
            raise ValueError(f"answer parser {name!r} is already registered")
        ANSWER_PARSERS[name] = fn
        return fn
    return add


_LAST_EQUALS = re.compile(r"=\s*(-?[0-9]+)", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)


@register_answer_parser("last_equals")
def last_equals_answer(text: str) -> str | None:
    """The integer after the last '=' of the last line ("x op y = z" per line), None if that line
    does not end in '= <integer>'. Lines are the stripped text split at newlines."""
    stripped = text.strip()
    if not stripped:
        return None
    last = stripped.split("\n")[-1].strip()
    if "=" not in last:
        return None
    match = _LAST_EQUALS.fullmatch(last, last.rindex("="))
    return match.group(1) if match else None


@register_answer_parser("boxed")
def boxed_answer(text: str) -> str | None:
    r"""The contents of the last `\boxed{...}` (braces balanced), stripped; None without one."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i].strip()
            depth -= 1
    return None


@register_answer_parser("last_number")
def last_number_answer(text: str) -> str | None:
    """The last number (an optional minus, digits, an optional decimal part) anywhere in the text."""
    found = _NUMBER.findall(text.replace(",", ""))
    return found[-1] if found else None


def same_answer(a: str, b: str) -> bool:
    """Two answer strings agree: numerically where both are numbers, else as stripped text
    with inner whitespace removed."""
    if _NUMBER.fullmatch(a.strip()) and _NUMBER.fullmatch(b.strip()):
        return float(a) == float(b)
    return "".join(a.split()) == "".join(b.split())


def reference_answer(reference: str, answer: str = "last_equals") -> str:
    """The answer a reference gives: what the answer parser reads from it (a reference solution,
    "... = 151"), else the reference itself when it is one bare answer without whitespace ("151",
    "\\frac{3}{2}"); anything else is a data error."""
    parsed = ANSWER_PARSERS[answer](reference)
    if parsed is not None:
        return parsed
    bare = reference.strip()
    if bare and not any(c.isspace() for c in bare):
        return bare
    raise ValueError(f"cannot read a final answer from reference {reference[:80]!r} with the {answer!r} "
                     "answer parser: expected a bare answer such as '151' or a solution the parser reads")


def _check_answer(params: dict) -> None:
    if params.get("answer", "last_equals") not in ANSWER_PARSERS:
        raise ValueError(f"answer={params['answer']!r}: expected one of {sorted(ANSWER_PARSERS)} "
                         "(register_answer_parser adds one)")


@register_rule("math_correct", 0.0, 1.0, needs_reference=True, check=_check_answer)
def math_correct(prompt: str, response: str, reference: str, *, answer: str = "last_equals") -> float:
    """1 if the response's final answer equals the reference's, else 0.

    `answer` names the parser that reads a final answer (`ANSWER_PARSERS`): `last_equals` (the
    integer after the last '=' on the last line: "x op y = z" solutions, default), `boxed` (the
    last \\boxed{...}, as MATH solutions end) or `last_number`. Numbers compare by value.
    """
    given = ANSWER_PARSERS[answer](response)
    return 1.0 if given is not None and same_answer(given, reference_answer(reference, answer)) else 0.0


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: null bytes
        return False
    return True


@register_rule("code_syntax", 0.0, 1.0)
def code_syntax(prompt: str, response: str, reference: None, *, fenced: bool = True) -> float:
    """1 if the code is non-blank and parses as Python (`ast.parse`), else 0.

    With `fenced`, the first ```-fenced block is the code when there is one.
    """
    code = extract_code(response) if fenced else response
    return 1.0 if code.strip() and _parses(code) else 0.0


@register_rule("code_tests", 0.0, 1.0, needs_reference=True, check=_check_positive("timeout", "memory_mb"))
def code_tests(prompt: str, response: str, reference: str, *, include_prompt: bool = False,
               fenced: bool = True, timeout: float = 5.0, memory_mb: int = 1024) -> float:
    """1 if the program passes the reference tests in the sandbox (`nexus.execution`), else 0.

    The program is the response's code (first fenced block with `fenced`), after the prompt with
    `include_prompt` (HumanEval: the prompt is the signature and docstring); the reference is
    Python test code run after it, e.g. asserts.
    """
    code = extract_code(response) if fenced else response
    program = prompt + code if include_prompt else code
    return 1.0 if run_program(program, reference, timeout=timeout, memory_mb=memory_mb).passed else 0.0


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(candidate: list[str], reference: list[str], max_n: int = 4, smooth: bool = True) -> float:
    """BLEU of one tokenised candidate against one reference (Papineni et al. 2002).

    BLEU = BP * exp(mean_n log p_n), with p_n the clipped n-gram precision and BP = 1 if c > r else
    exp(1 - r / c). `smooth` adds 1 to the matches and the total of every order n >= 2 (Lin and Och
    2004; "method 2" of Chen and Cherry 2014), so one missing 4-gram does not zero a sentence.
    An empty candidate scores 0.
    """
    if not candidate or not reference:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        cand, ref = ngrams(candidate, n), ngrams(reference, n)
        matches, total = sum((cand & ref).values()), sum(cand.values())
        if smooth and n >= 2:
            matches, total = matches + 1, total + 1
        if matches == 0 or total == 0:
            return 0.0
        log_sum += math.log(matches / total)
    c, r = len(candidate), len(reference)
    brevity = 1.0 if c > r else math.exp(1.0 - r / c)
    return brevity * math.exp(log_sum / max_n)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)))."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_f(candidate: list[str], reference: list[str], beta: float = 1.0) -> float:
    """ROUGE-L F-measure (Lin 2004, sec. 3.1): P = LCS / |cand|, R = LCS / |ref|,
    F = (1 + beta^2) P R / (R + beta^2 P); 0 when either side is empty or nothing is shared."""
    lcs = lcs_length(candidate, reference) if candidate and reference else 0
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(candidate), lcs / len(reference)
    return (1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)


@register_rule("bleu", 0.0, 1.0, needs_reference=True, check=_check_bleu)
def bleu(prompt: str, response: str, reference: str, *, max_n: int = 4, smooth: bool = True) -> float:
    """Sentence BLEU of the response against the reference (`sentence_bleu` on `tokenize`)."""
    return sentence_bleu(tokenize(response), tokenize(reference), max_n=max_n, smooth=smooth)


@register_rule("rouge_l", 0.0, 1.0, needs_reference=True, check=_check_positive("beta"))
def rouge_l(prompt: str, response: str, reference: str, *, beta: float = 1.0) -> float:
    """ROUGE-L F-measure of the response against the reference (`rouge_l_f` on `tokenize`)."""
    return rouge_l_f(tokenize(response), tokenize(reference), beta=beta)
