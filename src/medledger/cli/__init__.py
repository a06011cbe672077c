"""The `medledger` command line: thin handlers over the SDK and the node."""
