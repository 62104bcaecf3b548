"""Generated gRPC stubs of the cell API (see contracts/protogen.py); do not edit by hand."""
