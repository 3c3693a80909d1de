"""What each lakebox command does, with typed parameters, returning a report; `lakebox.cli` prints it."""
