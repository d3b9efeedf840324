"""The one exception every checkpoint problem raises."""


class CheckpointError(ValueError):
  """A checkpoint or its config.json is unreadable or does not match GPT-OSS.

  A ValueError so that callers validating user input catch it with the rest; its message is one
  line naming the file and the tensor or key at fault.
  """
