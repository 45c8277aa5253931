"""The socket service: the widget's and the operators' socket.io namespaces."""

from web.socket.service import create_app

__all__ = ["create_app"]
