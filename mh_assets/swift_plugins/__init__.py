"""Files ms-swift imports into its own training processes (``--external_plugins``)."""
