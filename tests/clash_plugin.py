"""A third-party plugin that clashes with the synthetic one (tests only): it registers the encoder
name ``gin`` of the bundled encoders again, and defines ``register_encoder`` - a misspelt hook that pluggy ignores."""

from __future__ import annotations

from synthetic_plugin import TinyEncoder

from benchbase import hookimpl


class OtherTiny(TinyEncoder):
    name = "gin"  # the harness's own GIN encoder has this name
    description = "another encoder called gin (tests only)"


@hookimpl
def register_encoders(register):
    register(OtherTiny)


def register_encoder(register):  # the misspelling: meant as register_encoders
    register(OtherTiny)
