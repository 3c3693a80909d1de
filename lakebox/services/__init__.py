"""The emulated AWS services, one module (or package) each, built by the box with what they need."""
