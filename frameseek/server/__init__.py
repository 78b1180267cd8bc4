"""`frameseek serve`: an HTTP API and a web page to search an index by image.

The web framework is imported only by `frameseek.server.app`, so that registering the `serve`
command costs the other commands nothing.
"""
