"""The pure run-time stage: facts, the compiled policy types, evaluation, replies, schedules."""
