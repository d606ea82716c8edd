"""Inputs shared by the evaluation tests."""

PROMPT = [{"role": "user", "content": "What is 12 + 30?"}]
RESPONSE = "Step 1: 7 * 6 = 42.\n\n[VERIFY]\n\n42 - 2 = 40.\n\nThe answer is \\boxed{40}."
