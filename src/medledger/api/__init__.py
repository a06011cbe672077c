"""The node's REST API (FastAPI): thin handlers over `medledger.node.service`."""

from medledger.api.app import create_app

__all__ = ["create_app"]
