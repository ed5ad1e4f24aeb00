"""Task runners that need nothing beyond the standard library and cloudpickle."""
