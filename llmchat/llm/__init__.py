"""The one LLM stack of the project: backends (llama.cpp, Ollama, Gemini), the packaged
model registry and the prompt text helpers, used by the model workers and the judge."""
