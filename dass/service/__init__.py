"""The dass service: a JupyterHub-managed service with the REST API and pages of dass.

:mod:`dass.service.app` holds the application (``python -m dass.service``),
:mod:`dass.service.handlers` the routes, :mod:`dass.service.auth` the lookup of a caller's hub
groups, and ``openapi.yaml`` the description of the API.
"""
