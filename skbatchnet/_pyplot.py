"""matplotlib, asked for only when something is drawn (the ``plot`` extra)."""

__all__ = ["import_pyplot"]

INSTALL_HINT = 'pip install "skbatchnet[plot]"'


def import_pyplot(caller):
    """Return ``matplotlib.pyplot``, or say how to install matplotlib."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib, which is not installed. Install it "
            f"with `{INSTALL_HINT}` (or `pip install matplotlib`)."
        ) from exc
    return plt
