"""Generated gRPC stubs of the cell API (see serving/protogen.py); do not edit by hand."""
