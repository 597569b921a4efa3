"""Policy text -> Policy: YAML documents, the JSON Schema, semantic checks, the compiler, loading."""
