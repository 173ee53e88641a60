"""Report renderers: terminal (rich), Markdown, CSV, JSON, HTML."""
