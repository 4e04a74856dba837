"""The flows as LangGraph `StateGraph`s: `engineering` and `deploy`, built on `steps`."""
