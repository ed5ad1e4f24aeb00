"""Runners for optional backends (Dask, Ray), imported only when used."""
