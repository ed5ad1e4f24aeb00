"""Backend-neutral core: states, futures, tasks, flows, the engine.  Imports no backend."""
