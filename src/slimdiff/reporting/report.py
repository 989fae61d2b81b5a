"""Run reports: one list of headings, paragraphs, tables and pictures, written as Markdown and as HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    """Collects the parts of a report; `write(folder)` renders `report.md` and `report.html` side by side.

    Pictures are given relative to the report folder, so the folder can be moved or zipped as a whole.
    """

    title: str
    parts: list[tuple] = field(default_factory=list)

    def heading(self, text: str) -> Report:
        self.parts.append(("heading", text))
        return self

    def paragraph(self, text: str) -> Report:
        self.parts.append(("paragraph", text))
        return self

    def table(self, header: list[str], rows: list[list[object]]) -> Report:
        self.parts.append(("table", header, [[_cell(v) for v in row] for row in rows]))
        return self

    def picture(self, path: str, caption: str) -> Report:
        self.parts.append(("picture", path, caption))
        return self

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, *rest in self.parts:
            if kind == "heading":
                out += [f"## {rest[0]}", ""]
            elif kind == "paragraph":
                out += [rest[0], ""]
            elif kind == "table":
                header, rows = rest
                out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                out += ["| " + " | ".join(row) + " |" for row in rows] + [""]
            else:
                path, caption = rest
                out += [f"![{caption}]({path})", "", f"*{caption}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, *rest in self.parts:
            if kind == "heading":
                body.append(f"<h2>{html.escape(rest[0])}</h2>")
            elif kind == "paragraph":
                body.append(f"<p>{html.escape(rest[0])}</p>")
            elif kind == "table":
                header, rows = rest
                head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            else:
                path, caption = rest
                body.append(
                    f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        style = (
            "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}img{max-width:100%;image-rendering:pixelated}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )

    def write(self, folder: str | Path) -> Path:
        """Write report.md and report.html into `folder`; returns the Markdown path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.html").write_text(self.html())
        path = folder / "report.md"
        path.write_text(self.markdown())
        return path


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
