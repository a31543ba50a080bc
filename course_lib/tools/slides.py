"""Build the offline slide decks: ``slides/src/NN_<name>.md`` → ``slides/NN_<name>.html`` (reveal.js + KaTeX).

Source format (one Markdown file per module):

- slides are separated by a line that is exactly ``---``;
- maths as ``$...$`` (inline) and ``$$...$$`` (display), written as KaTeX reads it; a literal dollar is ``\\$``;
- images as ``![caption](figures/<name>.png)`` on a line of their own become a figure with a caption;
  the figures are drawn by :func:`course_lib.tools.figures.make_figures` at build time;
- a line starting with ``Note:`` begins the speaker notes, which run to the end of the slide
  (press ``s`` in the deck for the speaker view);
- ``<!-- .slide: class="..." -->`` gives the slide's ``<section>`` attributes (as in reveal's Markdown
  plugin); Markdown works inside ``<div>`` blocks, e.g. ``<div class="box">`` (a highlighted box) or
  ``<div class="columns">`` with two ``<div>`` children (two columns; ``<div class="wide">`` for the wider one);
- ``![caption](figures/x.png){: .small}`` (or ``.large``) shows a figure smaller (larger) than the default.

The maths is cut out before Markdown sees it (so ``_`` and ``*`` stay maths) and put back, HTML-escaped,
afterwards; KaTeX's auto-render typesets it when the page loads. The page refers to ``vendor/`` and
``figures/`` by relative paths only, so it works opened from disk with no network.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import markdown

SLIDES_DIR = Path(__file__).resolve().parents[2] / "slides"
SOURCE_DIR = SLIDES_DIR / "src"
VENDOR_DIR = SLIDES_DIR / "vendor"

_SEPARATOR = re.compile(r"^---[ \t]*$", re.M)
_NOTE = re.compile(r"^Note:[ \t]*", re.M)
_SLIDE_ATTRS = re.compile(r"^[ \t]*<!--\s*\.slide:\s*(.*?)\s*-->[ \t]*\n?", re.M)
# Order matters: code first (its dollars are not maths), <div> openings, then display maths, then inline maths.
_PROTECT = re.compile(
    r"(?P<fence>^(?P<fchar>`{3,}|~{3,}).*?^(?P=fchar)[ \t]*$)"
    r"|(?P<code>(?P<ticks>`+)(?:(?!(?P=ticks)).)+(?P=ticks))"
    r"|(?P<div>^[ \t]*<div(?![^>]*\bmarkdown=)[^>]*(?=>))"
    r"|(?P<dollar>\\\$)"
    r"|(?P<display>\$\$(?:[^$\\]|\\.)+?\$\$)"
    r"|(?P<inline>\$(?!\s)(?:[^$\n\\]|\\.)+?(?<!\s)\$)",
    re.M | re.S,
)
_PLACEHOLDER = "KATEXPLACEHOLDER{}END"
_PLACEHOLDER_RE = re.compile(r"KATEXPLACEHOLDER(\d+)END")
_FIGURE = re.compile(r'<p>\s*(<img alt="(?P<alt>[^"]*)"[^>]*>)\s*</p>')
_EXTENSIONS = ["extra", "sane_lists"]


@dataclass
class Slide:
    """One slide: its Markdown body, speaker notes, ``<section>`` attributes and number of maths spans."""

    body: str
    notes: str = ""
    attrs: str = ""
    n_math: int = 0


@dataclass
class Deck:
    """A parsed source deck ``NN_<name>.md``."""

    source: Path
    title: str
    slides: list[Slide] = field(default_factory=list)

    @property
    def module(self) -> str:
        return self.source.name[:2]

    @property
    def html_name(self) -> str:
        return self.source.with_suffix(".html").name


def protect_math(text: str) -> tuple[str, list[str]]:
    """Replace each maths span by a placeholder that Markdown leaves alone; return the text and the spans.

    Also marks each ``<div>`` opening with ``markdown="1"`` so Markdown is processed inside it.
    """
    spans: list[str] = []

    def replace(match: re.Match) -> str:
        if match.group("fence") or match.group("code"):
            return match.group(0)
        if match.group("div"):  # let Markdown work inside the block
            return match.group(0) + ' markdown="1"'
        spans.append("&#36;" if match.group("dollar") else html.escape(match.group(0)))
        return _PLACEHOLDER.format(len(spans) - 1)

    return _PROTECT.sub(replace, text), spans


def count_math(text: str) -> int:
    """How many ``$...$`` and ``$$...$$`` spans ``text`` holds (code spans and ``\\$`` excluded)."""
    return sum(1 for m in _PROTECT.finditer(text) if m.group("display") or m.group("inline"))


def parse_deck(path: Path) -> Deck:
    """Split a source deck into slides, separating speaker notes and slide attributes."""
    text = Path(path).read_text(encoding="utf-8")
    title = re.search(r"^#\s+(.+)$", text, re.M)
    deck = Deck(source=Path(path), title=re.sub(r"[$*_`]", "", title.group(1)).strip() if title else Path(path).stem)
    for number, chunk in enumerate(_SEPARATOR.split(text), start=1):
        attrs = _SLIDE_ATTRS.search(chunk)
        chunk = _SLIDE_ATTRS.sub("", chunk, count=1)
        body, *notes = _NOTE.split(chunk, maxsplit=1)
        if not body.strip():
            raise ValueError(f"{path}: slide {number} is empty (two '---' lines in a row?)")
        deck.slides.append(Slide(body=body.strip(), notes="".join(notes).strip(), attrs=attrs.group(1) if attrs else "",
                                 n_math=count_math(body)))
    return deck


def markdown_to_html(text: str) -> str:
    """Markdown with protected maths → HTML; standalone images become ``<figure>`` with a caption."""
    protected, spans = protect_math(text)
    out = markdown.markdown(protected, extensions=_EXTENSIONS, output_format="html")
    out = _FIGURE.sub(lambda m: f'<figure>{m.group(1)}<figcaption>{m.group("alt")}</figcaption></figure>', out)
    return _PLACEHOLDER_RE.sub(lambda m: spans[int(m.group(1))], out)


def render_deck(deck: Deck) -> str:
    """The full HTML page of a deck."""
    sections = []
    for slide in deck.slides:
        notes = f'\n<aside class="notes">{markdown_to_html(slide.notes)}</aside>' if slide.notes else ""
        attrs = f" {slide.attrs}" if slide.attrs else ""
        sections.append(f"<section{attrs}>\n{markdown_to_html(slide.body)}{notes}\n</section>")
    return _PAGE.format(title=html.escape(deck.title), css=_CSS, sections="\n".join(sections))


def available_decks() -> dict[str, Path]:
    """Module number → source file, for every ``slides/src/NN_*.md``."""
    return {p.name[:2]: p for p in sorted(SOURCE_DIR.glob("[0-9][0-9]_*.md"))}


def build_slides(modules: list[str] | None = None, out_dir: Path = Path("slides")) -> list[Path]:
    """Build the decks of ``modules`` (e.g. ``["01", "03"]``; ``None`` for all) into ``out_dir``.

    Draws each deck's figures into ``out_dir/figures``, writes ``out_dir/NN_<name>.html`` and, when
    ``out_dir`` is not the course's own ``slides/`` folder, copies the vendored reveal.js and KaTeX
    into ``out_dir/vendor`` so the pages work where they are. Returns the HTML paths.
    """
    from course_lib.tools.figures import make_figures

    decks = available_decks()
    wanted = sorted(decks) if modules is None else [str(m).zfill(2) for m in modules]
    unknown = [m for m in wanted if m not in decks]
    if unknown:
        raise ValueError(f"no slide deck for module(s) {', '.join(unknown)}; available: {', '.join(decks)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() != SLIDES_DIR.resolve():
        shutil.copytree(VENDOR_DIR, out_dir / "vendor", dirs_exist_ok=True)
    built = []
    for module in wanted:
        deck = parse_deck(decks[module])
        make_figures(module, out_dir / "figures")
        page = render_deck(deck)
        missing = [src for src in re.findall(r'src="(figures/[^"]+)"', page) if not (out_dir / src).is_file()]
        if missing:
            raise FileNotFoundError(f"{deck.source.name} shows {', '.join(missing)}, which "
                                    f"course_lib.tools.figures.make_figures({module!r}) does not draw")
        path = out_dir / deck.html_name
        path.write_text(page, encoding="utf-8")
        built.append(path)
        FIGURE_TEXT_PROBLEMS[module] = figure_text_problems(deck)
        for problem in FIGURE_TEXT_PROBLEMS[module]:
            print(f"warning: deck {module}: {problem}", file=sys.stderr)
    return built


SLIDE_WIDTH_PX = 1280  # Reveal.initialize({width: 1280, height: 720}) below
MIN_FIGURE_TEXT_PX = 16
"""Smallest text a figure may show on the 1280 x 720 slide, in slide pixels: a bit over half the body
text (30 px) and just under the captions (18 px) -- still readable from the back of a lecture room."""

FIGURE_TEXT_PROBLEMS: dict[str, list[str]] = {}
"""Module -> the figure texts of its deck smaller than :data:`MIN_FIGURE_TEXT_PX`, filled by :func:`build_slides`."""

_IMAGE = re.compile(r"!\[[^\]]*\]\((figures/[^)\s]+)\)(?:\{:\s*\.(\w+)\s*\})?")
_DIV = re.compile(r"<div\b([^>]*)>|</div>")


def _css_max_height(selector: str) -> float:
    """``max-height`` of a figure image class in the deck stylesheet (one source for the build and the check)."""
    match = re.search(re.escape(selector) + r"\s*\{[^}]*max-height:\s*(\d+)px", _CSS)
    return float(match.group(1))


def _image_boxes(body: str) -> list[tuple[str, float, float]]:
    """(figure path, max width, max height) in slide pixels for every image in a slide's Markdown body.

    Heights come from the stylesheet's image classes; widths from the slide width, halved (by the
    flex weights) inside ``<div class="columns">``, whose children share the width minus the 1.2 em gap.
    """
    boxes, stack = [], []
    tokens = sorted([(m.start(), "div", m) for m in _DIV.finditer(body)]
                    + [(m.start(), "img", m) for m in _IMAGE.finditer(body)], key=lambda t: t[0])
    for _, kind, m in tokens:
        if kind == "div":
            if m.group(0) == "</div>":
                if stack:
                    stack.pop()
            else:
                stack.append(m.group(1))
            continue
        cls = m.group(2)
        height = _css_max_height(f".reveal figure img.{cls}" if cls in ("small", "large") else ".reveal figure img")
        width = float(SLIDE_WIDTH_PX)
        if len(stack) >= 2 and "columns" in stack[-2]:
            share = 1.5 if "wide" in stack[-1] else 1.0
            width = (SLIDE_WIDTH_PX - 36) * share / (share + 1.0)  # the other column has weight 1 (or 1.5)
        boxes.append((m.group(1), width, height))
    return boxes


def figure_text_problems(deck: Deck, min_px: float = MIN_FIGURE_TEXT_PX) -> list[str]:
    """Texts of the deck's figures that would be smaller than ``min_px`` slide pixels when projected.

    Uses the text sizes recorded when the figures were drawn (:data:`course_lib.tools.figure_files.TEXT_SIZES`)
    and the largest box each figure may fill on its slide; a figure is never shown larger than its
    natural size (one image pixel per slide pixel).
    """
    from course_lib.tools.figure_files import DPI, TEXT_SIZES

    problems = []
    for number, slide in enumerate(deck.slides, start=1):
        for src, max_w, max_h in _image_boxes(slide.body):
            record = TEXT_SIZES.get(Path(src).name)
            if record is None:
                continue
            scale = min(1.0, max_w / record.width_px, max_h / record.height_px)
            small = [(size * DPI / 72 * scale, text) for size, text in record.texts if size * DPI / 72 * scale < min_px]
            if small:
                shown = ", ".join(f"{text!r} {px:.1f} px" for px, text in small[:4])
                shown += ", ..." if len(small) > 4 else ""
                problems.append(f"slide {number}, {Path(src).name}: {len(small)} text(s) below {min_px:g} px on the "
                                f"slide (shown at {scale:.2f} of its size): {shown}")
    return problems


def _module(value: str) -> str:
    if not (len(value) <= 2 and value.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a module number such as 01")
    return value.zfill(2)


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.tools.slides [NN ...] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.tools.slides",
                                     description="Build the offline reveal.js slide decks.")
    parser.add_argument("modules", nargs="*", type=_module, help="module numbers, e.g. 01 03 (default: all)")
    parser.add_argument("--out", type=Path, default=SLIDES_DIR, help=f"output folder (default: {SLIDES_DIR})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(available_decks()))
    if unknown:
        parser.error(f"no slide deck for module(s) {', '.join(unknown)}; available: {', '.join(available_decks())}")
    for path in build_slides(args.modules or None, out_dir=args.out):
        print("built", path)
    return 0


_CSS = """
.reveal { font-size: 30px; }
.reveal .slides { text-align: left; }
.reveal h1 { font-size: 2.0em; }
.reveal h2 { font-size: 1.45em; margin-bottom: 0.5em; }
.reveal h3 { font-size: 1.1em; }
.reveal h1, .reveal h2, .reveal h3 { text-transform: none; }
.reveal p, .reveal li { line-height: 1.35; }
.reveal ul, .reveal ol { display: block; margin-left: 1.2em; }
.reveal li + li { margin-top: 0.25em; }
.reveal .katex-display { margin: 0.45em 0; }
.reveal .katex { font-size: 1.05em; }
.reveal figure { margin: 0.3em auto; text-align: center; }
.reveal figure img { max-height: 400px; max-width: 100%; margin: 0; }
.reveal figure img.small { max-height: 300px; }
.reveal figure img.large { max-height: 480px; }
.reveal figcaption { font-size: 0.6em; color: #555; margin-top: 0.2em; }
.reveal table { font-size: 0.75em; margin: 0.4em 0; }
.reveal pre { font-size: 0.6em; width: 100%; box-shadow: none; margin: 0.4em 0; }
.reveal pre code { max-height: 460px; padding: 0.6em; background: #f6f6f6; font-size: 1em; }
.reveal code { font-size: 0.8em; }
.reveal .columns { display: flex; gap: 1.2em; align-items: flex-start; }
.reveal .columns > div { flex: 1; min-width: 0; }
.reveal .columns > div.wide { flex: 1.5; }
.reveal .small { font-size: 0.8em; }
.reveal .muted { color: #666; }
.reveal .box { border-left: 5px solid #2a76dd; background: #f2f6fc; padding: 0.3em 0.8em; margin: 0.4em 0; }
.reveal .refs { font-size: 0.62em; color: #444; }
.reveal section.title h1 { margin-top: 1.6em; }
.reveal section.title p { color: #444; }
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="vendor/reveal/reveal.css">
<link rel="stylesheet" href="vendor/reveal/theme/white.css">
<link rel="stylesheet" href="vendor/katex/katex.min.css">
<style>{css}</style>
</head>
<body>
<div class="reveal">
<div class="slides">
{sections}
</div>
</div>
<script src="vendor/katex/katex.min.js"></script>
<script src="vendor/katex/contrib/auto-render.min.js"></script>
<script src="vendor/reveal/reveal.js"></script>
<script src="vendor/reveal/plugin/notes/notes.js"></script>
<script>
renderMathInElement(document.querySelector(".reveal .slides"), {{
  delimiters: [
    {{left: "$$", right: "$$", display: true}},
    {{left: "$", right: "$", display: false}}
  ],
  ignoredClasses: ["notes"],
  throwOnError: false,
  errorColor: "#cc0000"
}});
Reveal.initialize({{
  hash: true,
  width: 1280,
  height: 720,
  margin: 0.04,
  center: false,
  slideNumber: "c/t",
  transition: "none",
  plugins: [RevealNotes]
}});
document.fonts.ready.then(function () {{ Reveal.layout(); }});
</script>
</body>
</html>
"""


if __name__ == "__main__":
    sys.exit(main())
