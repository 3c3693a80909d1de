"""The ASL conformance corpus: state machines with input and expected output or error, from the developer guide."""
