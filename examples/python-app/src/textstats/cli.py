"""Command line interface: ``textstats [--top N] [--json] [FILE ...]``."""

from __future__ import annotations

import argparse
import json
import sys

from textstats import __version__
from textstats.core import analyze, top_words

STOPWORDS = frozenset(
    "a an and are as at be by for from in is it of on or that the to was with".split()
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="textstats", description="Count lines, words and characters."
    )
    p.add_argument("files", nargs="*", help="files to read (default: standard input)")
    p.add_argument(
        "--top", type=int, default=0, metavar="N", help="also list the N most frequent words"
    )
    p.add_argument(
        "--keep-stopwords",
        action="store_true",
        help="do not drop common English words from --top",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top < 0:
        print("textstats: --top must be >= 0", file=sys.stderr)
        return 2
    try:
        if args.files:
            parts = []
            for name in args.files:
                with open(name, encoding="utf-8") as fh:
                    parts.append(fh.read())
            text = "".join(parts)
        else:
            text = sys.stdin.read()
    except OSError as exc:
        print(f"textstats: {exc}", file=sys.stderr)
        return 1

    stats = analyze(text)
    stop = frozenset() if args.keep_stopwords else STOPWORDS
    top = top_words(text, args.top, stopwords=stop) if args.top else []
    if args.json:
        out: dict[str, object] = dict(stats.as_dict())
        if args.top:
            out["top"] = [{"word": w, "count": c} for w, c in top]
        print(json.dumps(out, sort_keys=True))
    else:
        for key, value in stats.as_dict().items():
            print(f"{key:>20}: {value}")
        for w, c in top:
            print(f"{c:>8}  {w}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
