// Removed once the tokenizer sources exist.
