"""The edge router: the front door of the stack (the same HTTP API as a cell).

    routing.py        pure: where a request goes (the routing plan), what budget each attempt gets
    ejection.py       pure: passive outlier ejection of the cells this edge cannot reach
    settings.py       EdgeSettings and their environment variables (REGIONCTL_EDGE_*)
    cell_clients.py   clients to the cells (gRPC or HTTP)
    table_watcher.py  polls the routing table in the control store
    last_resort.py    the edge's own popularity list
    router.py         the routing engine and its FastAPI app
"""
