"""The HTTP server: webhook, admin endpoints, store and reload, metrics, decision log. [I/O]"""
