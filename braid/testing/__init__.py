"""The conformance suite: behaviour every task runner must show, importable by runner authors."""
