"""rsforge serve: saved models behind an OpenAI-compatible chat API and a change-mask API, on Ray Serve."""
