"""Text generation with GPT-OSS: tokenizer, the harmony chat format, sampling, the decode loop."""
