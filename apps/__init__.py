"""User surfaces built only on the public ``NextGPT`` API: the Gradio chat (``gradio_app``), the OpenAI-compatible
HTTP API (``server``) and their shared request limits, queue and error reporting; the LangChain agent lives in
``agent/``."""
