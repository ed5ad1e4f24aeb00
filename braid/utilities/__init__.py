"""Where Prefect's ``prefect.utilities`` names braid has live (``annotations``)."""
