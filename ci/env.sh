# Environment every braid process needs on these machines (sourced by the ci scripts).
# Ray: keep 127.0.0.1 as given, no token auth, no usage reporting.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_AUTH_MODE=disabled
export RAY_USAGE_STATS_ENABLED=0
export PYTHONUNBUFFERED=1
