"""The report's sources (pages, configuration, notebooks), shipped with kdlib as data: kdlib.report finds
them here when kdlib is installed outside a checkout. Nothing here is imported."""
