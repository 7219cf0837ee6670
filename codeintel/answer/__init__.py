"""Answer generation: engines that turn retrieved chunks into a streamed, cited answer."""
