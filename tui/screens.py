"""Screens over the main one: a yes/no confirmation and a run's manifest."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Label, Static

__all__ = ["ConfirmScreen", "ManifestScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """Asks one question; dismisses with ``True`` for yes (``y``), ``False`` for no (``n``, Esc)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Grid(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="primary", id="yes")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ManifestScreen(Screen[None]):
    """The manifest of one run as stored (``processing_summary.json``), scrollable."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back")]

    def __init__(self, title: str, path: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.path = path
        self.text = text

    def compose(self) -> ComposeResult:
        yield Label(self.title_text, id="manifest-title")
        yield Label(self.path, id="manifest-path", markup=False)
        with VerticalScroll(id="manifest-body"):
            yield Static(self.text, markup=False, id="manifest-text")
        yield Footer()
